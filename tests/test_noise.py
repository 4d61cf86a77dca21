"""Tests of sparse_reg.noise: realised statistics, reproducibility, presets and errors."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from sparse_reg import noise

BALANCED10 = np.repeat(np.arange(10), 5000)  # 50,000 labels, CIFAR-10 sized
BALANCED100 = np.repeat(np.arange(100), 500)  # 50,000 labels, CIFAR-100 sized

# The widely used CIFAR-100 fine -> coarse table, written out independently of the preset's
# name-based definition.
COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]  # fmt: skip


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


def assert_counts_match_transition(result: noise.NoisyLabels, clean: np.ndarray) -> None:
    """Every realised transition entry lies within 5 sigma of its binomial expectation."""
    for i in np.unique(clean):
        n_i = int((clean == i).sum())
        for j in range(result.num_classes):
            count = round(result.realised_transition[i, j] * n_i)
            assert within_binomial(count, n_i, result.transition[i, j]), (i, j)


# --- symmetric -----------------------------------------------------------------------------


def test_symmetric_other_exact_rate_is_exact():
    labels = np.repeat(np.arange(10), 137)
    result = noise.symmetric(labels, 0.4, seed=0)
    assert result.realised_rate == 10 * math.floor(0.4 * 137) / labels.size
    flips_per_class = np.bincount(labels[result.flipped], minlength=10)
    np.testing.assert_array_equal(flips_per_class, np.full(10, math.floor(0.4 * 137)))
    expected = np.full((10, 10), 0.4 / 9) + np.eye(10) * (0.6 - 0.4 / 9)
    np.testing.assert_allclose(result.transition, expected)
    assert result.description == "symmetric uniform-other 0.4, exact counts"
    assert_counts_match_transition(result, labels)


def test_symmetric_other_never_keeps_selected_label():
    result = noise.symmetric(BALANCED10, 0.8, seed=3)
    assert result.flipped.sum() == 40000  # every selected label changes


def test_symmetric_any_effective_rate():
    result = noise.symmetric(BALANCED10, 0.4, seed=1, target="any")
    # 20,000 selected, each keeps its class with probability 1/10.
    assert within_binomial(int(result.flipped.sum()), 20000, 0.9)
    np.testing.assert_allclose(np.diag(result.transition), 0.6 + 0.04)
    assert "uniform-any" in result.description


def test_symmetric_sampled_within_binomial_bounds():
    result = noise.symmetric(BALANCED10, 0.4, seed=2, exact=False)
    assert within_binomial(int(result.flipped.sum()), 50000, 0.4)
    assert result.realised_rate != 0.4  # sampled, not exact (probability of equality ~0.4%)
    assert_counts_match_transition(result, BALANCED10)
    sampled_any = noise.symmetric(BALANCED10, 0.4, seed=2, exact=False, target="any")
    assert within_binomial(int(sampled_any.flipped.sum()), 50000, 0.36)


def test_seed_reproducibility():
    a = noise.symmetric(BALANCED10, 0.4, seed=7)
    b = noise.symmetric(BALANCED10, 0.4, seed=7)
    c = noise.symmetric(BALANCED10, 0.4, seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert a.seed == 7


def test_result_fields_and_immutability():
    result = noise.symmetric([0, 1, 2, 1, 0, 2, 2, 1], 0.5, seed=0)
    assert result.labels.dtype == np.int64
    assert result.flipped.dtype == np.bool_
    expected = hashlib.sha256(np.array([0, 1, 2, 1, 0, 2, 2, 1], "<i8").tobytes()).hexdigest()
    assert result.clean_fingerprint == expected
    with pytest.raises(ValueError, match="read-only"):
        result.labels[0] = 1
    with pytest.raises(AttributeError):
        result.seed = 3  # type: ignore[misc]


def test_absent_class_row_is_nan():
    result = noise.symmetric(np.array([0, 0, 2, 2]), 0.5, 3, seed=0)
    assert np.isnan(result.realised_transition[1]).all()
    assert not np.isnan(result.realised_transition[[0, 2]]).any()


def test_rate_zero_is_identity():
    result = noise.symmetric(BALANCED10, 0.0, seed=0)
    np.testing.assert_array_equal(result.labels, BALANCED10)
    assert result.realised_rate == 0.0


# --- pairflip and matrices -----------------------------------------------------------------


def test_pairflip_exact():
    result = noise.pairflip(BALANCED10, 0.45, 10, seed=0)
    assert result.realised_rate == 0.45
    for i in range(10):
        assert result.realised_transition[i, (i + 1) % 10] == pytest.approx(0.45)
    sampled = noise.pairflip(BALANCED10, 0.45, 10, seed=0, exact=False)
    assert within_binomial(int(sampled.flipped.sum()), 50000, 0.45)
    assert_counts_match_transition(sampled, BALANCED10)


def test_from_transition_matrix_row_and_column_conventions_agree():
    matrix = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    labels = np.repeat(np.arange(3), 20000)
    row = noise.from_transition_matrix(labels, matrix, seed=4)
    col = noise.from_transition_matrix(labels, matrix.T, seed=4, convention="column")
    np.testing.assert_array_equal(row.labels, col.labels)
    np.testing.assert_array_equal(row.transition, matrix)
    np.testing.assert_array_equal(col.transition, matrix)
    assert_counts_match_transition(row, labels)
    assert (row.labels[labels == 1] == 1).all()


def test_from_transition_matrix_exact():
    matrix = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    labels = np.repeat(np.arange(3), 1000)
    result = noise.from_transition_matrix(labels, matrix, seed=0, exact=True)
    np.testing.assert_allclose(np.diag(result.realised_transition), [0.7, 1.0, 0.5])


# --- asymmetric presets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "pairs"),
    [
        ("mnist", {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}),
        ("cifar10", {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}),
        ("fashion-mnist", {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7}),
    ],
)
def test_asymmetric_presets_exact(preset, pairs):
    result = noise.asymmetric(BALANCED10, 0.4, preset=preset, seed=0)
    expected = np.eye(10)
    for s, t in pairs.items():
        expected[s] = 0
        expected[s, s], expected[s, t] = 0.6, 0.4
    np.testing.assert_allclose(result.transition, expected)
    np.testing.assert_allclose(result.realised_transition, expected)
    assert result.realised_rate == pytest.approx(0.4 * len(pairs) / 10)


def test_asymmetric_sampled_within_bounds():
    result = noise.asymmetric(BALANCED10, 0.3, preset="mnist", seed=0, exact=False)
    assert_counts_match_transition(result, BALANCED10)
    compat = noise.asymmetric(BALANCED10, 0.3, preset="mnist", seed=0, paper_compatible=True)
    np.testing.assert_array_equal(compat.labels, result.labels)  # the official code samples


def test_cifar10_paper_compatible_sequential_quirk():
    rate = 0.4
    result = noise.asymmetric(BALANCED10, rate, preset="cifar10", seed=0, paper_compatible=True)
    flips = 5000 * (1 - np.diag(result.realised_transition))
    flips = np.rint(flips).astype(int)
    # 9->1, 2->0, 4->7 are single steps: exactly floor(0.4 * 5000) each.
    assert flips[9] == flips[2] == flips[4] == 2000
    # 3->5 flips 2000 cats; 5->3 then flips floor(0.4 * 7000) = 2800 of the 7000 "dogs", X of
    # which were cats (flipped back): cats 2000 - X, dogs 2800 - X.
    assert flips[5] - flips[3] == 800
    back = 2000 - flips[3]
    # X is hypergeometric(7000 population, 2000 cats, 2800 draws): mean 800.
    var = 2800 * (2000 / 7000) * (5000 / 7000) * (4200 / 6999)
    assert abs(back - 800) <= 5 * math.sqrt(var)
    assert result.realised_rate == (10800 - 2 * back) / 50000
    expected_rate = (5 * rate - rate**2) / 10  # 0.184
    assert abs(result.realised_rate - expected_rate) <= 5 * 2 * math.sqrt(var) / 50000
    assert result.transition[3, 5] == pytest.approx(rate * (1 - rate))
    assert result.transition[5, 3] == pytest.approx(rate)
    assert result.transition[3, 5] + result.transition[3, 3] == pytest.approx(1.0)
    assert "sequential" in result.description
    # The simultaneous version flips exactly 40% of each of the five classes.
    clean = noise.asymmetric(BALANCED10, rate, preset="cifar10", seed=0)
    assert clean.realised_rate == 0.2


def test_cifar100_blocks_versus_superclasses():
    blocks = noise.asymmetric(BALANCED100, 0.4, preset="cifar100", seed=0)
    for i in range(100):
        target = 5 * (i // 5) + (i + 1) % 5
        assert blocks.realised_transition[i, target] == pytest.approx(0.4)
    assert blocks.realised_rate == 0.4
    superclass = noise.asymmetric(BALANCED100, 0.4, preset="cifar100-superclass", seed=0)
    coarse = np.array(COARSE)
    np.testing.assert_array_equal(noise.CIFAR100_FINE_TO_COARSE, coarse)
    changed = superclass.flipped
    noisy, clean = superclass.labels[changed], BALANCED100[changed]
    np.testing.assert_array_equal(coarse[noisy], coarse[clean])  # never leaves the superclass
    # beaver (4) -> dolphin (30); whale (95) wraps to beaver (4).
    assert superclass.realised_transition[4, 30] == pytest.approx(0.4)
    assert superclass.realised_transition[95, 4] == pytest.approx(0.4)
    # The blocks are not semantic: apple (0) -> aquarium_fish (1) crosses superclasses.
    assert coarse[0] != coarse[1] and blocks.realised_transition[0, 1] == pytest.approx(0.4)


def test_cifar100_names_are_alphabetical():
    names = noise.CIFAR100_FINE_NAMES
    assert len(names) == 100 and list(names) == sorted(names)
    assert names[0] == "apple" and names[99] == "worm"
    assert len(noise.CIFAR100_COARSE_NAMES) == 20


# --- instance-dependent --------------------------------------------------------------------


def test_instance_dependent_rate_and_reproducibility():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 20000)
    features = rng.normal(size=(20000, 4, 4))
    a = noise.instance_dependent(labels, features, 0.4, 10, seed=5)
    b = noise.instance_dependent(labels, features, 0.4, 10, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    # Mean of N(0.4, 0.1) truncated to [0, 1) is 0.4 up to ~1e-6.
    sd = math.sqrt(0.4 * 0.6 / 20000)
    assert abs(a.realised_rate - 0.4) < 5 * sd
    np.testing.assert_allclose(a.transition.sum(axis=1), 1.0)
    assert np.all(np.abs(np.diag(a.transition) - 0.6) < 0.01)
    assert "Xia" in a.description


def test_instance_dependent_flip_rates_truncated():
    labels = np.zeros(5000, dtype=int)
    result = noise.instance_dependent(labels, np.ones((5000, 2)), 0.0, 2, seed=0)
    # With two classes every flip goes to class 1; rates are |N(0, 0.1)|-like, mean ~0.08.
    assert 0.06 < result.realised_rate < 0.10


# --- apply ---------------------------------------------------------------------------------


def test_apply_forms():
    sym = noise.apply("sym:0.4", BALANCED10, 10, seed=0)
    np.testing.assert_array_equal(sym.labels, noise.symmetric(BALANCED10, 0.4, 10, seed=0).labels)
    assert "uniform-any" in noise.apply("symany:0.4", BALANCED10, 10, seed=0).description
    asym = noise.apply("asym:0.4", BALANCED10, 10, dataset="cifar10", seed=0)
    assert "sequential" in asym.description
    lt = noise.apply("asym:0.4", BALANCED10, 10, dataset="cifar10-lt-exp-0.01", seed=0)
    np.testing.assert_array_equal(lt.labels, asym.labels)
    digits = noise.apply("asym:0.2", BALANCED10, 10, dataset="digits", seed=0)
    assert digits.description.startswith("asymmetric mnist 0.2")
    blocks = noise.apply("asym:0.3", BALANCED100, 100, dataset="cifar100", seed=0)
    assert blocks.realised_transition[4, 0] == pytest.approx(0.3)
    fashion = noise.apply("asym:0.3", BALANCED10, 10, dataset="fashion-mnist", seed=0)
    assert fashion.realised_transition[0, 6] == pytest.approx(0.3)
    assert noise.apply("pairflip:0.45", BALANCED10, 10, seed=0).realised_rate == 0.45
    none = noise.apply("none", BALANCED10, 10, seed=0)
    assert none.realised_rate == 0.0 and none.description == "none"
    inst = noise.apply("instance:0.2", BALANCED10[:500], 10, seed=0, features=np.ones((500, 3)))
    assert inst.description.startswith("instance-dependent")


@pytest.mark.parametrize("spec", ["bogus", "sym", "sym:", "asym=0.3", "sym:abc", "sym:0.2:1"])
def test_apply_unknown_spec(spec):
    with pytest.raises(ValueError, match=r"valid forms: none, sym:RATE"):
        noise.apply(spec, BALANCED10, 10, seed=0)


def test_apply_missing_context():
    with pytest.raises(ValueError, match="needs dataset"):
        noise.apply("asym:0.3", BALANCED10, 10, seed=0)
    with pytest.raises(ValueError, match="no asymmetric preset for dataset 'svhn'"):
        noise.apply("asym:0.3", BALANCED10, 10, dataset="svhn", seed=0)
    with pytest.raises(ValueError, match="needs features"):
        noise.apply("instance:0.3", BALANCED10, 10, seed=0)
    with pytest.raises(ValueError, match="num_classes=12 does not match"):
        noise.apply("asym:0.3", BALANCED10, 12, dataset="mnist", seed=0)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        noise.symmetric(BALANCED10, rate, seed=0)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        noise.apply(f"asym:{rate}", BALANCED10, 10, dataset="mnist", seed=0)


def test_rate_wrong_type():
    with pytest.raises(TypeError, match="rate must be a real number"):
        noise.pairflip(BALANCED10, "0.4", 10, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((2, 2), dtype=int), "labels must be a 1-D array"),
        (np.array([0.0, 1.0]), "labels must have an integer dtype, got float64"),
        (np.array([True, False]), "labels must have an integer dtype, got bool"),
        (np.array([], dtype=int), "labels is empty"),
        (np.array([0, -3, 1]), "labels must be non-negative; found -3 at index 1"),
        (np.array([0, 1, 10, 2]), r"labels must lie in \[0, 10\); found 10 at index 2"),
    ],
)
def test_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        noise.symmetric(labels, 0.2, 10, seed=0)


def test_labels_out_of_preset_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\); found 11"):
        noise.asymmetric(np.array([0, 11]), 0.2, preset="cifar10", seed=0)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones((2, 3)) / 3, "matrix must be a non-empty square"),
        (np.array([[0.5, 0.6], [0.0, 1.0]]), "matrix rows must sum to 1.*row 0 sums to 1.1"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), r"matrix has a negative entry -0.2 at \[0, 1\]"),
        (np.array([[0.5, 0.5], [np.nan, 1.0]]), "matrix has non-finite entries"),
        (np.array([[1.0, 1e-7], [0.0, 1.0]]), "matrix rows must sum to 1"),
    ],
)
def test_bad_matrix(matrix, message):
    with pytest.raises(ValueError, match=message):
        noise.from_transition_matrix(np.array([0, 1]), matrix, seed=0)


def test_bad_matrix_column_convention():
    rows_ok = np.array([[0.7, 0.3], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"matrix columns must sum to 1.*column 0 sums to 0.7"):
        noise.from_transition_matrix(np.array([0, 1]), rows_ok, seed=0, convention="column")
    with pytest.raises(ValueError, match="convention must be 'row' or 'column'"):
        noise.from_transition_matrix(np.array([0, 1]), rows_ok, seed=0, convention="col")


def test_unknown_preset_and_paper_compat_errors():
    with pytest.raises(ValueError, match=r"unknown preset 'svhn'; valid presets: \['cifar10'"):
        noise.asymmetric(BALANCED10, 0.2, preset="svhn", seed=0)
    with pytest.raises(ValueError, match="'fashion-mnist' has no official implementation"):
        noise.asymmetric(BALANCED10, 0.2, preset="fashion-mnist", seed=0, paper_compatible=True)
    with pytest.raises(ValueError, match="exact must be left unset"):
        noise.asymmetric(BALANCED10, 0.2, preset="cifar10", seed=0, paper_compatible=True,
                         exact=True)  # fmt: skip


def test_bad_seed_target_features():
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        noise.symmetric(BALANCED10, 0.2, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        noise.symmetric(BALANCED10, 0.2, seed=-1)
    with pytest.raises(ValueError, match="target must be 'other' or 'any'"):
        noise.symmetric(BALANCED10, 0.2, seed=0, target="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"features must have one row per label \(4\)"):
        noise.instance_dependent(np.arange(4), np.ones((3, 2)), 0.2, 4, seed=0)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        noise.pairflip(np.zeros(3, dtype=int), 0.2, 1, seed=0)
