"""``python -m sparse_reg.train.tsne``: the penultimate features of a finished run, embedded and drawn."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from sparse_reg.train import main as train
from sparse_reg.train.tsne import _load_run, main, penultimate_features


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tsne") / "run"
    argv = ["--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--threads", "1", "--quiet"]
    assert train([*argv, "--noise", "sym:0.8", "--out", str(out)]) == 0
    return out


def test_features_are_the_input_of_the_last_linear_layer(finished_run):
    _config, data, model = _load_run(finished_run)
    features = penultimate_features(model, data)
    assert features.shape == (40, 256)  # the digits MLP's second hidden layer, after its ReLU
    assert (features >= 0).all()


def test_figure_is_written(finished_run, tmp_path, capsys):
    out = tmp_path / "fig" / "tsne.png"
    assert main([str(finished_run), str(finished_run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_an_unfinished_run_is_refused_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no finished run" in err[0]
