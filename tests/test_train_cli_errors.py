"""Every command-line and config error exits 2 with one line naming the flag or key, its value and
what was expected; config values are checked against the types of the Config fields."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import main
from sparse_reg.train.config import Config, ConfigError, resolve_config
from sparse_reg.train.config_types import TypeMismatch, check_value, field_types

TINY = ["--epochs", "1", "--limit-train", "50", "--limit-test", "20", "--threads", "1", "--quiet"]

# (case, argv or a config file's JSON, what the one line must say)
CLI_CASES = [
    ("seed -1", ["--seed", "-1"], "seed must be an integer in [0, 4294967295]; got -1"),
    ("seed 2**64", ["--seed", str(2**64)], "seed must be an integer in [0, 4294967295]"),
    ("noise seed -1", ["--noise-seed", "-1"], "noise_seed must be an integer in [0, 4294967295]; got -1"),
    ("device cuda without a GPU", ["--device", "cuda:7"], "device 'cuda:7' cannot be used"),
    ("unknown device", ["--device", "bogus"], "device 'bogus' cannot be used: Expected one of cpu"),
    ("out under a file", ["--out", "{file}/run"], "cannot write the run directory '{file}/run'"),
    ("out that cannot be created", ["--out", "/proc/sparse-reg-run"], "cannot write the run directory"),
    ("backend without its library", ["--backend", "cupy"], "backend='cupy' needs the 'cupy' package"),
    ("resume and overwrite", ["--resume", "--overwrite"], "--overwrite: not allowed with argument --resume"),
    ("model too big for the images", ["--model", "resnet34"], "model 'resnet34' cannot take inputs of shape (1, 8, 8): resnet34 expects 32x32"),
    ("sweep out under a file", ["sweep", "--out", "{file}/sweep"], "--out '{file}/sweep': cannot create"),
    ("sweep repeated seed", ["sweep", "--seeds", "0,0"], "--seeds 0,0 repeats 0"),
    ("sweep repeated loss", ["sweep", "--losses", "ce,CE"], "--losses ce,ce repeats ce"),
    ("sweep negative seed", ["sweep", "--seeds", "-1"], "seed must be an integer in [0, 4294967295]; got -1"),
]  # fmt: skip

CONFIG_CASES = [
    ({"seed": "0"}, "seed must be an integer; got '0' (a string)"),
    ({"seed": 1.5}, "seed must be an integer; got 1.5 (a number)"),
    ({"noise_seed": "3"}, "noise_seed must be an integer or null (none); got '3' (a string)"),
    ({"preset": []}, "preset must be a string; got [] (a list)"),
    ({"loss_params": "q=0.7"}, "loss_params must be a table of settings; got 'q=0.7'"),
    ({"clip": "5"}, "clip must be a number or null (none); got '5' (a string)"),
    ({"lr": "0.1"}, "lr must be a number; got '0.1' (a string)"),
    ({"deterministic": "no"}, "deterministic must be a boolean (true or false); got 'no'"),
    ({"crop_pad": True}, "crop_pad must be an integer; got True (a boolean)"),
    ({"amp": "false"}, "amp must be a boolean (true or false); got 'false' (a string)"),
    ({"flip": "false"}, "flip must be a boolean (true or false); got 'false' (a string)"),
    ({"limit_train": True}, "limit_train must be an integer or null (none); got True (a boolean)"),
    ({"epochs": 2.0}, "epochs must be an integer; got 2.0 (a number)"),
    ({"epochs": None}, "epochs must be an integer; got None (null)"),
    ({"out": 5}, "out must be a string or null (none); got 5 (an integer)"),
    ({"device": 5}, "device must be a string; got 5 (an integer)"),
]  # fmt: skip


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m sparse_reg.train: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_command_line_error_exits_2_with_one_line(tmp_path, capsys, argv, needle):
    file = tmp_path / "a-file"
    file.write_text("")
    argv = [a.replace("{file}", str(file)) for a in argv]
    if argv[0] == "sweep" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "sweep")]
    if argv[0] == "sweep" and "--losses" not in argv:
        argv += ["--losses", "ce"]
    if argv[0] == "sweep" and "--noises" not in argv:
        argv += ["--noises", "sym:0.2"]
    if argv[0] != "sweep" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    code, err = _run([*argv, *TINY], capsys)
    assert code == 2, err
    assert needle.replace("{file}", str(file)) in _one_line(err)


@pytest.mark.parametrize(("values", "needle"), CONFIG_CASES, ids=[json.dumps(c[0]) for c in CONFIG_CASES])
def test_a_config_value_of_the_wrong_type_exits_2_naming_the_key(tmp_path, capsys, values, needle):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(values))
    code, err = _run(["--config", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert f"config file '{path}': {needle}" in _one_line(err)
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xff\xfe{")
    code, err = _run(["--config", str(path)], capsys)
    assert code == 2 and f"config file '{path}' is not UTF-8 text" in _one_line(err)


@pytest.mark.parametrize("target", ["directory", "/dev/zero"])
def test_a_config_path_that_is_not_a_file_is_refused_without_reading(tmp_path, capsys, target):
    path = tmp_path if target == "directory" else Path(target)
    if not path.exists():
        pytest.skip(f"{target} does not exist here")
    code, err = _run(["--config", str(path)], capsys)
    assert code == 2 and f"config file '{path}' is " in _one_line(err)


def test_argparse_errors_are_one_line_too(capsys):
    code, err = _run(["--epochs", "many"], capsys)
    assert code == 2 and "argument --epochs: invalid int value: 'many'" in _one_line(err)


def test_config_values_keep_their_json_types(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"amp": False, "flip": True, "lr": 1, "limit_train": 30}))
    config = resolve_config({}, path)
    assert config.amp is False and config.flip is True and config.limit_train == 30
    assert isinstance(config.lr, float) and config.lr == 1.0
    with pytest.raises(ConfigError, match=r"settings: amp must be a boolean"):
        resolve_config({"amp": "false"})


def test_every_config_field_is_type_checked(tmp_path):
    """Driven by the annotations: each field refuses a list, and takes its own default."""
    types_of = field_types(Config)
    for field in dataclasses.fields(Config):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert check_value(default, types_of[field.name]) == default, field.name
        with pytest.raises(TypeMismatch):
            check_value([object()], types_of[field.name])


def test_a_new_field_is_checked_without_more_code():
    @dataclasses.dataclass
    class Settings:
        warmup: int | None = None
        kind: Literal["a", "b"] = "a"
        scale: float = 1.0

    types_of = field_types(Settings)
    assert check_value(None, types_of["warmup"]) is None
    assert check_value(2, types_of["scale"]) == 2.0
    for value, name in ((True, "warmup"), ("3", "warmup"), ("c", "kind"), ("1", "scale"), (10**400, "scale")):
        with pytest.raises(TypeMismatch):
            check_value(value, types_of[name])


def test_out_directory_of_a_refused_config_is_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    path: Path = tmp_path / "settings.json"
    path.write_text(json.dumps({"seed": "0"}))
    assert _run(["--config", str(path), "--out", str(out)], capsys)[0] == 2
    assert not out.exists()
