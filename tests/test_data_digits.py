"""The shipped digits: equal to scikit-learn's copy and split, checked on load, loaded without sklearn."""

from __future__ import annotations

import runpy
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from sparse_reg.data import digits
from sparse_reg.errors import CorruptDatasetError


def test_shipped_file_equals_scikit_learn_and_its_split():
    pytest.importorskip("sklearn")
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_digits.py"
    expected = runpy.run_path(str(script))["digits_arrays"]()
    with np.load(resources.files("sparse_reg.data").joinpath("digits.npz"), allow_pickle=False) as shipped:
        assert sorted(shipped.files) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(shipped[key], value, err_msg=key)
            assert shipped[key].dtype == value.dtype


def test_a_modified_file_is_refused(monkeypatch, tmp_path):
    with np.load(resources.files("sparse_reg.data").joinpath("digits.npz"), allow_pickle=False) as shipped:
        arrays = {key: shipped[key].copy() for key in shipped.files}
    arrays["labels"][0] = (arrays["labels"][0] + 1) % 10
    np.savez(tmp_path / "digits.npz", **arrays)
    monkeypatch.setattr(digits.resources, "files", lambda _package: tmp_path)
    with pytest.raises(CorruptDatasetError, match=r"digits\.npz: checksum mismatch"):
        digits.load_digits()
    (tmp_path / "digits.npz").write_bytes(b"not a zip")
    with pytest.raises(CorruptDatasetError, match="cannot be read"):
        digits.load_digits()


def test_loading_imports_no_scikit_learn():
    code = (
        "import sys; from sparse_reg.data import load_digits; ds = load_digits(); "
        "print(ds.x_train.shape, ds.source, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(1257,", "1,", "8,", "8)", "bundled", "False"]
