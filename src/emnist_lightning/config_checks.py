"""The type and range of every config key a user can set, checked before anything is read,
built or trained, by every entry point (train, tune, predict, evaluate, export, serve).

One table, `RULES`, holds a rule for each key of the shipped configs (a unit test composes every
config and fails on a key without one, so no key can be added unchecked). Keys a user adds to a
`_target_` node of their own (`+trainer.gradient_clip_val=1`) have no rule and are left to the
object they configure. A refusal is one ConfigError naming the key, the value and what works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, get_args

from omegaconf import DictConfig, ListConfig, OmegaConf

from emnist_lightning.data.labels import SPLITS
from emnist_lightning.errors import ConfigError, ModelFileError
from emnist_lightning.models.card import INPUT_MEAN, INPUT_STD, MAX_TEST_TIME_SHIFT
from emnist_lightning.models.metrics import MONITORABLE
from emnist_lightning.models.nets import NETS, check_net
from emnist_lightning.models.value_checks import Check

# Addresses LitServe binds (it refuses any other host).
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "trace")
MAX_RANDOM_TEST = 256  # predict.py's random test images, drawn as one grid
MAX_SEED = 2**32 - 1  # numpy's seeds, which Lightning's seed_everything sets too
# Keys Hydra and the sweeper own (the sweeper checks its own settings).
_UNCHECKED_ROOTS = ("hydra",)


@dataclass(frozen=True)
class Rule:
    """What one key accepts: `accepts(value)`, said in words as `expected`; `bad` holds a value
    of the wrong type and, where the key has a range, one outside it (the generated test)."""

    accepts: Callable[[Any], bool]
    expected: str
    bad: tuple[Any, ...]
    node: bool = False  # null, or a config node whose keys are checked one by one


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nullable(rule: Rule, nullable: bool) -> Rule:
    if not nullable:
        return rule
    return Rule(lambda v: v is None or rule.accepts(v), rule.expected + ", or null", rule.bad)


def whole(
    low: int, high: int | None = None, *, also: tuple[Any, ...] = (), nullable: bool = False
) -> Rule:
    """A whole number in [low, high] (or one of `also`, e.g. -1 or "auto")."""
    span = f">= {low}" if high is None else f"in [{low}, {high}]"
    extra = "".join(f" or {v}" for v in also)

    def accepts(v: Any) -> bool:
        if any(v == a and type(v) is type(a) for a in also):
            return True
        return _is_int(v) and v >= low and (high is None or v <= high)

    out_of_range = next(v for v in (low - 1, low - 2) if v not in also)
    return _nullable(
        Rule(accepts, f"a whole number {span}{extra}", ("abc", out_of_range)), nullable
    )


def number(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    nullable: bool = False,
) -> Rule:
    """A finite number between low and high (ends included unless open)."""

    def accepts(v: Any) -> bool:
        if not _is_number(v) or not math.isfinite(v):
            return False
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    if math.isinf(low) and math.isinf(high):
        span, outside = "", math.nan
    elif math.isinf(high):
        span, outside = f" {'>' if open_low else '>='} {low:g}", low - 1
    else:
        left = "(" if open_low or math.isinf(low) else "["
        right = ")" if open_high or math.isinf(high) else "]"
        span = f" in {left}{low:g}, {high:g}{right}"
        outside = low - 1 if not math.isinf(low) else high + 1
    return _nullable(Rule(accepts, f"a finite number{span}", ("abc", outside)), nullable)


def flag(nullable: bool = False) -> Rule:
    return _nullable(Rule(lambda v: isinstance(v, bool), "true or false", ("abc", 2)), nullable)


def text(choices: tuple[str, ...] = (), *, nullable: bool = False, empty: bool = False) -> Rule:
    """A string (one of `choices` when given; non-empty unless `empty`)."""
    if choices:
        rule = Rule(lambda v: v in choices, "one of " + ", ".join(choices), (12, "bogus"))
    else:
        rule = Rule(
            lambda v: isinstance(v, str) and (empty or v != ""),
            "text" if empty else "non-empty text",
            ([1, 2],) if empty else ([1, 2], ""),
        )
    return _nullable(rule, nullable)


def count_or_fraction() -> Rule:
    """Lightning's limit_*_batches and overfit_batches: a batch count or a share of batches."""
    return Rule(
        lambda v: v is None or (_is_int(v) and v >= 0) or (_is_number(v) and 0 <= v <= 1),
        "a whole number of batches >= 0, a fraction in [0, 1], or null",
        ("abc", -1),
    )


def list_of(item: Rule, length: int | None = None, *, allow_one: bool = False) -> Rule:
    """A list of values that each pass `item` (of `length` items when given)."""

    def accepts(v: Any) -> bool:
        if allow_one and not isinstance(v, (list, tuple, ListConfig)):
            return item.accepts(v)
        if not isinstance(v, (list, tuple, ListConfig)):
            return False
        return (length is None or len(v) == length) and all(item.accepts(x) for x in v)

    size = f"{length} " if length else ""
    expected = f"a list of {size}values, each {item.expected}"
    return Rule(accepts, expected, (12 if allow_one else "abc", [item.bad[-1]]))


def _precisions() -> tuple[Any, ...]:
    """Lightning's own list of precision settings (strings and ints), plus our `auto`."""
    from lightning.fabric.connector import _PRECISION_INPUT

    def flat(kind: Any) -> list[Any]:
        return [v for arg in get_args(kind) for v in (flat(arg) if get_args(arg) else [arg])]

    return ("auto", *flat(_PRECISION_INPUT))


def _from_check(check: Check) -> Rule:
    """A rule from a model-file check (models/value_checks.py), so that a config and a model
    file never disagree on what a valid value is."""
    expected = (check(object())[1] or "must be valid").removeprefix("must be ")
    outside = next(v for v in (-1, 10**9, -(10**9)) if check(v)[1] is not None)
    return Rule(lambda v: check(v)[1] is None, expected, ("abc", outside))


def _net_param_rule(param: str) -> Rule | None:
    """The rule of model.net.<param>, from the net registry (models/nets.py), read at each
    check since nets may be registered later. Nets may check a parameter of the same name
    differently (bn_cnn's two widths, res_cnn's three): a value passes here when one of them
    takes it, and the named net's own check (`check_net`, when the model is built) decides."""
    rules = [_from_check(entry.params[param]) for entry in NETS.values() if param in entry.params]
    if len(rules) <= 1:
        return rules[0] if rules else None
    expected = " or ".join(dict.fromkeys(rule.expected for rule in rules))

    def accepts(value: Any) -> bool:
        return any(rule.accepts(value) for rule in rules)

    return Rule(accepts, expected, tuple(v for v in rules[0].bad if not accepts(v)))


_TARGET = text()  # a `_target_`: the user's own config, so any import path they choose
_SEED = whole(0, MAX_SEED)
_POSITIVE = number(0, open_low=True)
_NON_NEGATIVE = number(0)
_PROBABILITY = number(0, 1)
_PATH = text()
# ModelCheckpoint can also watch `epoch` and `step`; EarlyStopping and the pruner see only
# what the module logs (they would fail, or silently never prune, on the other two).
_CHECKPOINT_MONITOR = text(MONITORABLE, nullable=True)  # null: keep the newest, as Lightning does
_LOGGED_METRIC = text(tuple(name for name in MONITORABLE if name not in ("epoch", "step")))

# Keys whose last part says what they are, wherever they sit.
_BY_LAST_PART: dict[str, Rule] = {
    "_target_": _TARGET,
    "_partial_": flag(),
    "_recursive_": flag(),
}

_AUGMENT = {
    "degrees": _NON_NEGATIVE,
    "translate": number(0, 1, open_high=True),
    "scale": list_of(_POSITIVE, 2),
    "shear": _NON_NEGATIVE,
    "alpha": _NON_NEGATIVE,
    "grid": whole(2, 64),
    "p": _PROBABILITY,
    "thinner": _PROBABILITY,
    "thicker": _NON_NEGATIVE,
}

_DATA = {
    "data_dir": _PATH,
    "split": text(tuple(SPLITS)),
    "download": flag(),
    "val_fraction": number(0, 1, open_low=True, open_high=True),
    "batch_size": whole(1),
    "eval_batch_size": whole(1),
    "in_memory": flag(),
    "num_workers": whole(0),
    "seed": _SEED,
    "augment": Rule(lambda v: v is None, "null or an augmentation config", ("abc",), node=True),
    "extra": list_of(text()),
    "extra_repeat": whole(1),
}

_MODEL = {
    "lr": _POSITIVE,
    # The normalisation is a model fact, checked as every model file's card is.
    "input_mean": _from_check(INPUT_MEAN),
    "input_std": _from_check(INPUT_STD),
    "label_smoothing": number(0, 1, open_high=True),
    "logit_adjust_tau": _NON_NEGATIVE,
    "channels_last": flag(),
    "net.name": text(),  # checked against the registry with its parameters
    "optimizer.weight_decay": _NON_NEGATIVE,
    "optimizer.fused": flag(nullable=True),
    "scheduler": Rule(lambda v: v is None, "null or a scheduler config", ("abc",), node=True),
    "scheduler.pct_start": number(0, 1, open_low=True, open_high=True),
    "scheduler_interval": text(("epoch", "step")),
    "log_every_step": flag(),
    "test_time_shift": whole(0, MAX_TEST_TIME_SHIFT),
    "mixing": Rule(lambda v: v is None, "null or a mixing config", ("abc",), node=True),
    "mixing.alpha": _POSITIVE,
    "distillation": Rule(lambda v: v is None, "null or a distillation config", ("abc",), node=True),
    "distillation.teacher": Rule(
        lambda v: isinstance(v, str) and v != "",
        "the path of the teacher's model file (a checkpoint, or a state_dict)",
        ([1, 2], ""),
    ),
    "distillation.weight": _PROBABILITY,
    "distillation.temperature": _POSITIVE,
}

_TRAINER = {
    "default_root_dir": _PATH,
    "accelerator": text(("auto", "cpu", "gpu", "cuda", "mps", "tpu")),
    "devices": Rule(
        lambda v: v == "auto" or (_is_int(v) and v >= 1) or (v == -1 and _is_int(v)),
        "a whole number >= 1, -1 (all) or auto",
        ("abc", 0),
    ),
    "precision": Rule(
        lambda v: any(v == p and type(v) is type(p) for p in _precisions()),
        "one of " + ", ".join(map(str, _precisions())),
        (1.5, "bogus"),
    ),
    "max_epochs": whole(1, also=(-1,)),
    "check_val_every_n_epoch": whole(1, nullable=True),
    "log_every_n_steps": whole(1),
    "deterministic": flag(),
    "use_distributed_sampler": flag(),
    "enable_progress_bar": flag(),
    "enable_model_summary": flag(),
    "limit_train_batches": count_or_fraction(),
    "limit_val_batches": count_or_fraction(),
    "limit_test_batches": count_or_fraction(),
    "overfit_batches": count_or_fraction(),
    "fast_dev_run": Rule(
        lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
        "true, false or a whole number of batches >= 0",
        ("abc", -1),
    ),
    "strategy": text(),
    "num_nodes": whole(1),
    "sync_batchnorm": flag(),
}

# An entry set to null is dropped (tune.yaml drops the progress bar and the lr monitor).
_DROPPABLE = Rule(lambda v: v is None, "null or a config with a _target_", ("abc",), node=True)

_CALLBACKS = {
    "model_checkpoint.dirpath": _PATH,
    "model_checkpoint.filename": text(nullable=True),
    "model_checkpoint.monitor": _CHECKPOINT_MONITOR,
    "model_checkpoint.mode": text(("min", "max")),
    "model_checkpoint.save_top_k": whole(0, also=(-1,)),
    "model_checkpoint.save_last": flag(),
    "model_checkpoint.auto_insert_metric_name": flag(),
    "model_checkpoint.enable_version_counter": flag(),
    "lr_monitor.logging_interval": text(("epoch", "step")),
    "progress_bar.refresh_rate": whole(0),
    "early_stopping.monitor": _LOGGED_METRIC,
    "early_stopping.mode": text(("min", "max")),
    "early_stopping.patience": whole(0),
    "early_stopping.min_delta": _NON_NEGATIVE,
    "ema.decay": number(0, 1, open_low=True, open_high=True),
    "ema.update_starting_at_epoch": whole(0),
    "*": _DROPPABLE,
}

_LOGGER = {
    "*.save_dir": _PATH,
    "*.name": _PATH,
    "*.version": text(empty=True),
    "mlflow.tracking_uri": _PATH,
    "mlflow.artifact_location": _PATH,
    "mlflow.experiment_name": _PATH,
    "mlflow.tags.*": text(empty=True),
    "mlflow.run_dir": _PATH,
    "tensorboard.default_hp_metric": flag(),
    "*": _DROPPABLE,
}

_MODEL_FILE = text()  # best, last or a path

# Top-level keys; the same name means the same thing in every entry point's config.
_TOP = {
    "task_name": text(),
    "seed": _SEED,
    "deterministic": flag(),
    "test": flag(),
    "ckpt_path": text(nullable=True),
    "init_from": text(nullable=True),
    "float32_matmul_precision": text(("highest", "high", "medium"), nullable=True),
    "train_runs_dir": _PATH,
    "top_k": whole(1),
    # A grid of at most 32 rows of 8: more makes a figure that takes minutes to draw.
    "random_test": whole(0, MAX_RANDOM_TEST),
    "images": list_of(text(), allow_one=True),
    "formats": list_of(text(), allow_one=True),  # which formats: export.py's check
    # tune.py
    # One name, or one per direction of a multi-objective sweep; which names a trial returns
    # is checked by the sweep's config_check (tuning/objective.py: check_objectives).
    "objective": list_of(text(), allow_one=True),
    "pruning_monitor": _LOGGED_METRIC,
    "trial_number": whole(0, nullable=True),
    "pick": whole(0, nullable=True),
    "plots": flag(),
    "threads_per_trial": whole(1, also=("auto",)),
    # serve.py
    "host": text(HOSTS),
    "port": whole(1024, 65535),
    "max_batch_size": whole(1),
    "batch_timeout": _NON_NEGATIVE,
    "workers": whole(1),
    "api_servers": whole(1, nullable=True),
    "threads_per_worker": whole(1, nullable=True),
    "max_image_mb": _POSITIVE,
    "max_megapixels": _POSITIVE,
    "corrections_dir": text(nullable=True),
    "corrections_max_mb": _POSITIVE,
    "request_timeout": _POSITIVE,
    "read_timeout": _POSITIVE,
    "keep_alive_timeout": _POSITIVE,
    "max_connections": whole(1),
    "log_level": text(LOG_LEVELS),
    "metrics": flag(),
    "accelerator": text(("auto", "cpu", "cuda", "gpu")),
    "paths.data_dir": _PATH,
    "paths.log_dir": _PATH,
    "paths.runs_dir": _PATH,
    "paths.output_dir": _PATH,
}


def _prefixed(prefix: str, rules: dict[str, Rule]) -> dict[str, Rule]:
    return {f"{prefix}.{key}": rule for key, rule in rules.items()}


# Every key of every entry point's config: dotted paths, `*` for one part (a list index or
# any name). One table, so a key's check is found where its neighbours' are.
RULES: dict[str, Rule] = {
    **_TOP,
    **_prefixed("data", _DATA),
    **_prefixed("data.augment", _AUGMENT),
    **_prefixed("data.augment._args_.*", _AUGMENT),
    **_prefixed("model", _MODEL),
    **_prefixed("trainer", _TRAINER),
    **_prefixed("callbacks", _CALLBACKS),
    **_prefixed("logger", _LOGGER),
}


def rule_for(path: str) -> Rule | None:
    """The rule of a dotted key (list indices as numbers), or None for a key without one."""
    if path in RULES:
        return RULES[path]
    if path.startswith("model.net.") and path.count(".") == 2:
        return _net_param_rule(path.rsplit(".", 1)[1])
    for pattern, rule in RULES.items():
        if "*" in pattern and _matches(pattern.split("."), path.split(".")):
            return rule
    return _BY_LAST_PART.get(path.rsplit(".", 1)[-1])


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """Whether dotted parts fit a pattern whose `*` stands for exactly one part."""
    return len(pattern) == len(parts) and all(
        p in ("*", part) for p, part in zip(pattern, parts, strict=True)
    )


def _shown(value: Any) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 60 else text_[:57] + "..."


def leaves(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every key to check: a node with a rule of its own (a list such as
    model.net.widths, a value where text belongs) is one value, other nodes are walked into. Values that cannot be resolved
    here (Hydra's runtime paths outside a Hydra run) are left out."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        path = f"{prefix}{key}"
        if not prefix and path in _UNCHECKED_ROOTS:
            continue
        try:
            value = node[key]
        except Exception:  # an interpolation only Hydra's runtime can resolve
            continue
        rule = rule_for(path)
        if isinstance(value, (DictConfig, ListConfig)) and (rule is None or rule.node):
            yield from leaves(value, f"{path}.")
        elif isinstance(value, (DictConfig, ListConfig)):
            yield path, OmegaConf.to_container(value, resolve=True)
        else:
            yield path, value


def check_value(path: str, value: Any) -> None:
    """Refuse one value in one line, if its key has a rule it does not pass."""
    rule = rule_for(path)
    if rule is not None and not rule.accepts(value):
        raise ConfigError(f"{path}={_shown(value)} is invalid: it must be {rule.expected}")


# Keys that moved: an experiment file of an earlier release may still set them.
_MOVED_KEYS = {"data.mean": "model.input_mean", "data.std": "model.input_std"}


def validate_config(cfg: DictConfig) -> None:
    """Raise one ConfigError naming the first bad key, its value and what would work."""
    for old, new in _MOVED_KEYS.items():
        if OmegaConf.select(cfg, old, default=None) is not None:
            raise ConfigError(
                f"{old} is now {new} (normalisation is a fact of the model, recorded in its "
                f"card): set {new} instead"
            )
    for path, value in leaves(cfg):
        check_value(path, value)
    _check_net(cfg)


def _check_net(cfg: DictConfig) -> None:
    """model.net as a whole: a net of the registry, taking exactly the parameters given."""
    net = OmegaConf.select(cfg, "model.net", default=None)
    if not isinstance(net, DictConfig):
        return
    params = {k: v for k, v in OmegaConf.to_container(net).items() if k != "name"}
    try:
        check_net(net.get("name"), params, "model.net")
    except ModelFileError as exc:
        raise ConfigError(str(exc)) from None
