"""A hostile "best" trial planted in a study's storage, as any worker that can write to a
shared journal file or database could, and the check that none of it reaches a retrain."""

from __future__ import annotations

from pathlib import Path

import optuna
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution

from emnist_lightning.tuning.results import EXPERIMENT_NAME, write_sweep_results
from helpers.configs import CONF_DIR
from hydra_plugins.optuna_pruning_sweeper._search_space import parse_search_space
from hydra_plugins.optuna_pruning_sweeper._storage import open_storage
from hydra_plugins.optuna_pruning_sweeper.trial import OVERRIDES_ATTR

# The sweep the honest worker runs: its command line.
SWEEP_ARGUMENTS = [
    "model.lr=tag(log, interval(1e-4, 1e-1))",
    "model.net.dropout=interval(0.0, 0.5)",
    "data.batch_size=64",
    "trainer.max_epochs=1",
]
HONEST_FIXED = ["data.batch_size=64", "trainer.max_epochs=1"]


def _payload(victim: Path, name: str) -> str:
    return f"{{_target_: os.makedirs, name: {victim / name}}}"


def plant_trials(storage: optuna.storages.BaseStorage | str, study_name: str, victim: Path) -> None:
    """An honest trial and, with a better value, a planted one carrying Hydra objects in its
    overrides and parameters outside the sweep (or outside its ranges)."""
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"model.lr": 0.001, "model.net.dropout": 0.2},
            distributions={
                "model.lr": FloatDistribution(1e-4, 1e-1, log=True),
                "model.net.dropout": FloatDistribution(0.0, 0.5),
            },
            value=0.5,
            user_attrs={OVERRIDES_ATTR: HONEST_FIXED},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={
                "model.lr": 0.02,  # inside the sweep's range: kept
                "model.net.dropout": 7.0,  # outside it
                "callbacks.evil._target_": "os.makedirs",  # not searched at all
            },
            distributions={
                "model.lr": FloatDistribution(1e-4, 1e-1, log=True),
                "model.net.dropout": FloatDistribution(0.0, 10.0),
                "callbacks.evil._target_": CategoricalDistribution(["os.makedirs"]),
            },
            value=0.99,
            user_attrs={
                OVERRIDES_ATTR: [
                    "data.batch_size=128",  # a number this sweep sets: in range, kept
                    "trainer.max_epochs=1",
                    f"+callbacks.evil={_payload(victim, 'callback')}",
                    f"++logger.evil={_payload(victim, 'logger')}",
                    f"model.optimizer={_payload(victim, 'optimizer')}",
                    "model=bn_cnn",  # a group choice this sweep does not make
                    "data.batch_size=abc",
                    f"paths.log_dir={victim}",
                ]
            },
        )
    )


def write_tuned(storage_spec: str, study_name: str, sweep_dir: Path) -> Path:
    """What an honest worker of the sweep writes from the study (every result file)."""
    search = parse_search_space({}, SWEEP_ARGUMENTS)
    assert search.fixed == HONEST_FIXED
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_spec))
    experiment = write_sweep_results(study, sweep_dir, False, None, search)
    assert experiment == sweep_dir / "experiment" / f"{EXPERIMENT_NAME}.yaml"
    return experiment


def compose_retrain(sweep_dir: Path) -> DictConfig:
    """The retrain's config, as `train.py --config-dir <sweep dir> experiment=tuned` composes it."""
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return compose(
            "train",
            overrides=[f"experiment={EXPERIMENT_NAME}", f"hydra.searchpath=[file://{sweep_dir}]"],
        )


def targets(cfg: DictConfig) -> set[str]:
    """Every `_target_` in a config: what instantiate could build from it."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.update(str(v) for k, v in node.items() if k == "_target_")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(OmegaConf.to_container(cfg, resolve=False))
    return found


def assert_nothing_planted_reaches_the_retrain(sweep_dir: Path, victim: Path) -> None:
    text = (sweep_dir / "experiment" / f"{EXPERIMENT_NAME}.yaml").read_text()
    assert "evil" not in text and "_target_" not in text and str(victim) not in text, text
    cfg = compose_retrain(sweep_dir)
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        shipped = compose("train", overrides=["data.batch_size=128", "model.lr=0.02"])
    assert targets(cfg) == targets(shipped)  # no object the shipped config does not build
    assert cfg.model.lr == 0.02 and cfg.data.batch_size == 128  # the trusted parts are kept
    assert cfg.model.net.name == "seed_cnn" and cfg.model.net.dropout == shipped.model.net.dropout
    assert "evil" not in cfg.callbacks and "evil" not in cfg.logger
