"""The resolved configuration of one training run.

Values are layered, later layers winning: the preset's values for the chosen loss and noise
(:func:`sparse_reg.train.presets.preset_values`), then a ``--config`` file (JSON, or TOML by its
``.toml`` suffix), then the command-line options.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparse_reg.backends import REGISTRY
from sparse_reg.losses import available_losses, get_loss
from sparse_reg.noise import SPEC_FORMS
from sparse_reg.regularizer import OBJECTIVE_PARAMETERS
from sparse_reg.train.config_types import TypeMismatch, check_value, field_types
from sparse_reg.train.presets import PRESETS, preset_values

__all__ = [
    "LAM_SCHEDULES",
    "MODELS",
    "RUNTIME_KEYS",
    "SELECTIONS",
    "TRAINER_BACKENDS",
    "Config",
    "ConfigError",
    "check_settings",
    "load_config_file",
    "parse_loss",
    "resolve_config",
]

#: Model names accepted by ``model``.
MODELS: tuple[str, ...] = ("mlp", "mlp-bn", "mnist-cnn", "cnn8", "resnet34")
#: Libraries accepted by ``backend``: those the backend registry marks as able to train a torch model.
TRAINER_BACKENDS: tuple[str, ...] = tuple(name for name, row in REGISTRY.items() if row.trainer)
#: Keys that may differ when a run is resumed: they change where and how it runs, not what it computes.
RUNTIME_KEYS: frozenset[str] = frozenset(
    {"out", "data_dir", "device", "quiet", "threads"}
    | {"log_every", "tensorboard", "eval_every", "stop_after"}
)

#: Config fields named differently from the objective parameter they hold.
_OBJECTIVE_FIELDS = {"lam": "lam0"}

_NOISE_KINDS = ("sym", "symany", "asym", "pairflip", "instance")

#: Values of ``lam_schedule``: the paper's open-loop schedule, or the held-out-driven one.
LAM_SCHEDULES: tuple[str, ...] = ("paper", "auto")
#: Values of ``select``: the last epoch's model, or the one with the best held-out noisy accuracy.
SELECTIONS: tuple[str, ...] = ("last", "holdout")


class ConfigError(ValueError):
    """An invalid configuration value; the message names it and lists what is valid."""


@dataclass
class Config:
    """Every setting of a run. Field names are the ``--config`` file keys (``--lam0`` -> ``lam0``)."""

    preset: str = "digits"
    loss: str = "ce+sr"
    noise: str = "sym:0.6"
    seed: int = 0
    #: Seed of the label noise; ``None`` uses :attr:`seed`.
    noise_seed: int | None = None
    dataset: str = "digits"
    model: str = "mlp"
    lt_profile: str | None = None
    lt_imbalance: float = 0.01
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 64
    eval_batch_size: int = 256
    #: Evaluate (test set, clean and flipped training parts) every this many epochs and at the last
    #: epoch; the rows of the other epochs hold no accuracies. Evaluation reads no random state, so
    #: it never changes what is trained.
    eval_every: int = 1
    #: Global gradient-norm clip; ``None`` switches clipping off.
    clip: float | None = 5.0
    #: ``"cosine"`` (to 0 over the epochs, stepped per epoch) or ``"constant"``.
    lr_schedule: str = "cosine"
    tau: float = 0.1
    p: float = 0.1
    lam0: float = 4.0
    rho: float = 2.0
    every: int = 5
    # --- the clock of the lambda schedule (sparse_reg.LambdaSchedule) ---
    #: ``"epoch"`` (every/warmup count epochs), ``"step"`` (optimizer steps) or ``"progress"``
    #: (epochs of a ``lam_horizon``-epoch reference run, stretched over this run).
    lam_unit: str = "epoch"
    #: Linear warm-up of lambda from 0 to lam0, in units of the clock (0: none).
    lam_warmup: int = 0
    #: ``lam_unit="progress"``: epochs of the reference run; ``None``: the preset's epochs.
    lam_horizon: int | None = None
    #: ``lam_unit="progress"``: training-set size the pace is written for. A run on ``n`` smaller
    #: than it grows lambda through the reference range within the first ``sqrt(n / size)`` of the
    #: run and then holds it at the reference run's last value; ``None`` (every preset): no size
    #: scaling, the preset's pace over the run whatever the training-set size.
    lam_reference_size: int | None = None
    # --- end of the lambda clock ---
    normalize: bool = False
    clamp: float | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    crop_pad: int = 0
    flip: bool = False
    rotate: float = 0.0
    #: Train on a fixed random subset of this many training images (``None``: all).
    limit_train: int | None = None
    #: Evaluate on the first this many test images (``None``: all).
    limit_test: int | None = None
    # --- the closed loop: a noisy held-out split, the lambda schedule it drives, the model it picks ---
    #: Fraction in (0, 0.5) of the noisy training set held out, stratified by noisy label, with
    #: its noisy labels, and scored every epoch as ``holdout_acc`` (``None``: train on all).
    holdout: float | None = None
    #: ``"paper"``: the open-loop ``lam0 * rho ** (t // every)`` on ``lam_unit``'s clock;
    #: ``"auto"``: :class:`sparse_reg.AdaptiveLambda` on ``holdout_acc`` (needs ``holdout``).
    lam_schedule: str = "paper"
    #: ``lam_schedule="auto"``: growth factor per epoch once the held-out score has plateaued.
    lam_growth: float = 4.0
    #: ``lam_schedule="auto"``: epochs without a gain of the held-out score that mark the plateau.
    lam_patience: int = 2
    #: ``lam_schedule="auto"``: saturation weight; ``None``: the paper schedule's last lambda.
    lam_max: float | None = None
    #: The model a run returns (``model.pt``): ``"last"`` epoch's, or the ``"holdout"`` epoch's,
    #: the one with the best held-out noisy accuracy (needs ``holdout``).
    select: str = "last"
    # --- end of the closed loop ---
    data_dir: str | None = None
    device: str = "auto"
    backend: str = "torch"
    #: CPU threads of torch; ``None``: 1 for the small ``mlp`` model (many threads only contend on a
    #: model that small), torch's default otherwise.
    threads: int | None = None
    amp: bool = False
    compile: bool = False
    deterministic: bool = True
    out: str | None = None
    quiet: bool = False
    #: Train up to this epoch and stop, leaving a run that ``--resume`` continues exactly (``None``:
    #: to the end). A runtime setting: the epochs trained are the same either way (``tune``'s
    #: successive halving stops its grid points this way).
    stop_after: int | None = None
    # --- the user's own data, progress lines and TensorBoard -----------------------------------
    #: A ``.npz`` file of the user's own data (:mod:`sparse_reg.train.userdata`) in place of the
    #: preset's dataset; the preset still chooses the model family and the hyperparameters.
    data: str | None = None
    #: Least seconds between two progress lines when stderr is not a terminal (0: every epoch).
    log_every: float = 10.0
    #: Also log every epoch's metrics for TensorBoard, in ``<run dir>/tensorboard``.
    tensorboard: bool = False
    # --------------------------------------------------------------------------------------------

    @property
    def base_loss(self) -> str:
        """Canonical base-loss name (``"fl+sr"`` -> ``"focal"``)."""
        return parse_loss(self.loss)[0]

    def objective_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`sparse_reg.Objective.create` for this run's loss.

        One field per :data:`sparse_reg.regularizer.OBJECTIVE_PARAMETERS` entry, of the same name
        except ``lam``, whose field is ``lam0`` (the schedule's start), plus ``loss_params``.
        """
        values = {p.name: getattr(self, _OBJECTIVE_FIELDS.get(p.name, p.name)) for p in OBJECTIVE_PARAMETERS}
        return {"base": self.base_loss, **values, **self.loss_params}

    @property
    def with_sr(self) -> bool:
        """Whether the loss carries sparse regularization."""
        return parse_loss(self.loss)[1]

    @property
    def run_name(self) -> str:
        """``<preset>-<loss>-<noise>-seed<k>``, e.g. ``digits-ce+sr-sym0.6-seed0``.

        With :attr:`data`, the file's stem takes the preset's place (``mine-ce+sr-sym0.6-seed0``),
        so a run on one's own data never lands in the preset's run directory.
        """
        source = self.preset if self.data is None else Path(self.data).stem
        return f"{source}-{self.loss}-{noise_tag(self.noise)}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        """``out`` if given, else ``runs/<run_name>`` under the current directory."""
        return Path(self.out) if self.out else Path("runs") / self.run_name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def noise_tag(noise: str) -> str:
    """A file-name-safe form of a noise spec: ``"sym:0.6"`` -> ``"sym0.6"``."""
    return noise.strip().lower().replace(":", "")


def parse_loss(name: str) -> tuple[str, bool]:
    """Split ``"gce+sr"`` into ``("gce", True)``; only a trailing ``+sr`` is the SR suffix.

    ``"nce+rce"`` is itself a base loss, so the suffix is looked for at the end only.

    Raises
    ------
    ConfigError
        The base loss is not registered; the message lists the valid names.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"loss must be a non-empty string such as 'ce+sr'; got {name!r}")
    text = name.strip().lower()
    with_sr = text.endswith("+sr")
    base = text[: -len("+sr")] if with_sr else text
    try:
        return get_loss(base).name, with_sr
    except ValueError:
        valid = ", ".join(available_losses())
        raise ConfigError(
            f"unknown loss {name!r}: the base loss {base!r} is not registered. Valid base losses: "
            f"{valid} (alias fl = focal), each optionally with a '+sr' suffix, e.g. 'gce+sr'"
        ) from None


def check_noise(spec: str) -> str:
    """Validate the form of a noise spec (the rate's range is checked when the noise is drawn)."""
    text = spec.strip().lower() if isinstance(spec, str) else ""
    if text == "none":
        return text
    match = re.fullmatch(r"([a-z]+):([0-9.eE+-]+)", text)
    ok = match is not None and match[1] in _NOISE_KINDS
    if ok:
        try:
            rate = float(match[2])  # type: ignore[index]
        except ValueError:
            ok = False
        else:
            ok = 0.0 <= rate < 1.0
    if not ok:
        raise ConfigError(
            f"invalid noise spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)} with RATE in [0, 1), "
            "e.g. sym:0.4, asym:0.3, pairflip:0.45"
        )
    return text


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return name


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--config`` file: TOML when the name ends in ``.toml``, JSON otherwise.

    Raises
    ------
    ConfigError
        The file is missing, unparsable, not a table, or has unknown keys.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        # A FIFO or /dev/zero would block or never end; a directory is an obvious slip.
        kind = "a directory" if path.is_dir() else "not a regular file (a FIFO or device?)"
        raise ConfigError(f"config file {str(path)!r} is {kind}; expected a JSON or TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of settings")
    where = f"config file {str(path)!r}"
    _check_keys(data, where)
    return _check_types(data, where)


#: Keys a settings table may hold besides the :class:`Config` fields: ``paper`` (a bool) asks for
#: the paper's recipe in place of the preset's closed loop, as ``--paper`` does.
_DIRECTIVES = frozenset({"paper"})


def check_settings(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked for unknown keys and against the :class:`Config` field types, as a
    ``--config`` file is; ``where`` names the source in the message.

    Raises
    ------
    ConfigError
        An unknown key, or a value of the wrong type.
    """
    _check_keys(values, where)
    return _check_types(values, where)


def _check_keys(values: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(Config)} | _DIRECTIVES
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )


#: Seeds are those of :func:`numpy.random.seed`: 32-bit unsigned integers.
MAX_SEED = 2**32 - 1

_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table", type(None): "null"}  # fmt: skip


def _check_types(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against the :class:`Config` field types (see :mod:`.config_types`).

    Raises
    ------
    ConfigError
        A value of the wrong type; the message names ``where``, the key, the value and its type, and
        what the field takes.
    """
    types_of = field_types(Config)
    checked = {}
    for key, value in values.items():
        if key in _DIRECTIVES:
            checked[key] = value  # checked where it is read
            continue
        try:
            checked[key] = check_value(value, types_of[key])
        except TypeMismatch as exc:
            kind = _TYPE_WORDS.get(type(value), type(value).__name__)
            raise ConfigError(f"{where}: {key} must be {exc.expected}; got {value!r} ({kind})") from None
    return checked


def resolve_config(overrides: Mapping[str, Any], config_file: str | Path | None = None) -> Config:
    """Layer preset values, the config file and ``overrides`` into a validated :class:`Config`.

    Parameters
    ----------
    overrides
        Settings given explicitly (on the command line); a ``None`` value sets the setting to
        ``None`` (e.g. ``clip``: no clipping).
    config_file
        Optional JSON or TOML file of settings.

    Raises
    ------
    ConfigError
        An invalid preset, loss, noise spec or value; the message names it.
    """
    given = dict(overrides)
    paper = given.pop("paper", None)
    _check_keys(given, "settings")
    given = _check_types(given, "settings")
    from_file = load_config_file(config_file) if config_file is not None else {}
    paper = from_file.pop("paper", False) if paper is None else paper
    if not isinstance(paper, bool):
        raise ConfigError(f"paper must be true or false; got {paper!r}")
    layered = {**from_file, **given}
    if "loss_params" in from_file and "loss_params" in given:
        layered["loss_params"] = {**from_file["loss_params"], **given["loss_params"]}
    preset = check_preset(layered.get("preset", Config.preset))
    loss = layered.get("loss", Config.loss)
    base, with_sr = parse_loss(loss)
    # A user's own data come with their own (real) label noise: none is added unless asked for.
    default_noise = "none" if layered.get("data") is not None else PRESETS[preset].noise
    noise = check_noise(layered.get("noise", default_noise))
    values = preset_values(PRESETS[preset], base, with_sr, noise, paper=paper)
    explicit_params = layered.pop("loss_params", {})
    values["loss_params"] = {**values["loss_params"], **explicit_params}
    values.update(layered)
    values.update(preset=preset, loss=loss.strip().lower(), noise=noise)
    if values.get("holdout") == 0 and not isinstance(values.get("holdout"), bool):
        values["holdout"] = None  # 0 is "no held-out split", stored one way
    config = Config(**values)
    validate(config)
    return config


def _validate_closed_loop(config: Config, need: Any) -> None:
    """The held-out split, the adaptive schedule and the selection; messages name the flags."""
    need(
        config.holdout is None
        or (isinstance(config.holdout, (int, float)) and not isinstance(config.holdout, bool)
            and 0 < config.holdout < 0.5),
        f"--holdout must be a fraction in [0, 0.5) (0 or none: no held-out split); got {config.holdout!r}",
    )
    need(
        config.lam_schedule in LAM_SCHEDULES,
        f"--lam-schedule must be one of {', '.join(LAM_SCHEDULES)}; got {config.lam_schedule!r}",
    )
    need(
        config.select in SELECTIONS,
        f"--select must be one of {', '.join(SELECTIONS)}; got {config.select!r}",
    )
    for flag, value in (("--lam-schedule", config.lam_schedule), ("--select", config.select)):
        need(
            value in ("paper", "last") or config.holdout is not None,
            f"{flag} {value} needs a held-out split to read: add --holdout FRACTION (e.g. 0.1)",
        )
    need(
        isinstance(config.lam_growth, (int, float)) and not isinstance(config.lam_growth, bool)
        and math.isfinite(config.lam_growth) and config.lam_growth > 1,
        f"--lam-growth must be a finite number > 1; got {config.lam_growth!r}",
    )
    need(
        isinstance(config.lam_patience, int) and not isinstance(config.lam_patience, bool)
        and config.lam_patience >= 1,
        f"--lam-patience must be an integer >= 1; got {config.lam_patience!r}",
    )
    need(
        config.lam_max is None
        or (isinstance(config.lam_max, (int, float)) and not isinstance(config.lam_max, bool)
            and math.isfinite(config.lam_max) and config.lam_max >= config.lam0),
        f"--lam-max must be a finite number >= --lam0 ({config.lam0!r}) or none; got {config.lam_max!r}",
    )


def validate(config: Config) -> None:
    """Check ranges and choices; the loss objective itself is validated by the library."""
    from sparse_reg.regularizer import Objective

    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    for key in ("seed", "noise_seed"):
        value = getattr(config, key)
        need(
            value is None or 0 <= value <= MAX_SEED,
            f"{key} must be an integer in [0, {MAX_SEED}]; got {value!r}",
        )
    need(config.model in MODELS, f"unknown model {config.model!r}; valid models: {', '.join(MODELS)}")
    need(
        config.backend in TRAINER_BACKENDS,
        f"unknown backend {config.backend!r}; valid backends: {', '.join(TRAINER_BACKENDS)}",
    )
    need(
        config.lr_schedule in ("cosine", "constant"),
        f"lr_schedule must be 'cosine' or 'constant'; got {config.lr_schedule!r}",
    )
    for key in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        value = getattr(config, key)
        need(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{key} must be an integer >= 1; got {value!r}",
        )
    for key in ("lr", "momentum", "weight_decay", "rotate", "lt_imbalance"):
        value = getattr(config, key)
        need(
            isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
            f"{key} must be a finite number >= 0; got {value!r}",
        )
    need(
        config.clip is None or (math.isfinite(config.clip) and config.clip > 0),
        f"clip must be a number > 0 or none; got {config.clip!r}",
    )
    need(
        isinstance(config.crop_pad, int) and config.crop_pad >= 0,
        f"crop_pad must be an integer >= 0; got {config.crop_pad!r}",
    )
    need(
        config.lt_profile in (None, "exp", "step"),
        f"lt_profile must be 'exp', 'step' or none; got {config.lt_profile!r}",
    )
    for key in ("limit_train", "limit_test", "threads", "stop_after"):
        value = getattr(config, key)
        need(
            value is None or (isinstance(value, int) and value >= 1),
            f"{key} must be an integer >= 1; got {value!r}",
        )
    # --- the user's own data, progress lines and TensorBoard -----------------------------------
    need(
        config.data is None or (isinstance(config.data, str) and config.data.endswith(".npz")),
        f"data must be the path of a .npz file; got {config.data!r}",
    )
    need(
        isinstance(config.log_every, (int, float))
        and not isinstance(config.log_every, bool)
        and math.isfinite(config.log_every)
        and config.log_every >= 0,
        f"log_every must be a finite number of seconds >= 0; got {config.log_every!r}",
    )
    need(
        isinstance(config.tensorboard, bool),
        f"tensorboard must be true or false; got {config.tensorboard!r}",
    )
    # --------------------------------------------------------------------------------------------
    _validate_closed_loop(config, need)
    from sparse_reg.schedule import UNITS, LambdaSchedule

    need(config.lam_unit in UNITS, f"lam_unit must be one of {', '.join(UNITS)}; got {config.lam_unit!r}")
    need(
        config.lam_horizon is None or (isinstance(config.lam_horizon, int) and config.lam_horizon >= 1),
        f"lam_horizon must be an integer >= 1 or none; got {config.lam_horizon!r}",
    )
    need(
        config.lam_reference_size is None
        or (isinstance(config.lam_reference_size, int) and config.lam_reference_size >= 1),
        f"lam_reference_size must be an integer >= 1 or none; got {config.lam_reference_size!r}",
    )
    try:
        LambdaSchedule(config.lam0, config.rho, config.every, warmup=config.lam_warmup)
        Objective.create(**config.objective_arguments())
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
