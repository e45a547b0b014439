"""train(cfg): build a run from the config, fit it, test it, write its artifacts, return metrics.

The pipeline reads in the names of its steps: `build_run` -> `fit` -> `test_best` ->
`write_artifacts`. Everything a run is made of comes from `_target_` entries of the config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from emnist_lightning.config_checks import validate_config
from emnist_lightning.console import progress_bar_fits, quiet_console, quiet_trial
from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.errors import ConfigError, first_line, user_errors_unwrapped
from emnist_lightning.evaluation.report import (
    METRICS_FILE,
    REPORT_DIR,
    format_metrics_table,
    write_report,
)
from emnist_lightning.inference.model_files import (
    CARD_NAME,
    FINISHED,
    RUNNING,
    STATE_DICT_NAME,
    export_state_dict,
    fit_status,
    read_checkpoint,
    resolve_ckpt_path,
    write_fit_status,
)
from emnist_lightning.models.classifier import CharacterClassifier
from emnist_lightning.models.provenance import NO_EXPERIMENT
from emnist_lightning.training.callbacks import (
    ConsistentModelCheckpoint,
    EpochLine,
    RecordProvenance,
    SeedEachProcess,
)
from emnist_lightning.training.checkpoint_io import checkpoint_folder_lock, remove_partial_files
from emnist_lightning.training.fine_tune import start_from_weights
from emnist_lightning.training.precision import resolve_precision, runs_on_gpu
from emnist_lightning.training.resume import check_resume_compatible
from emnist_lightning.training.tracking import EpochMLFlowLogger, finish_tracking

log = logging.getLogger(__name__)

# "<pid>:<checkpoint or empty>": what a run resumes, for the DDP processes Lightning starts
# for it (they inherit its environment), so `ckpt_path=last` cannot differ between ranks.
RESUME_ENV = "EMNIST_LIGHTNING_RESUME_FROM"


@dataclass
class Run:
    """Everything one training run is made of, built from its config."""

    cfg: DictConfig
    datamodule: EMNISTDataModule
    model: CharacterClassifier
    trainer: L.Trainer
    checkpointing: ModelCheckpoint | None
    resume_from: Path | None
    output_dir: Path


# -- building --------------------------------------------------------------------------------
def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Build every `_target_` entry of a config group (callbacks, loggers); skip nulls."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def experiment_name() -> str | None:
    """The `experiment=` this run chose (NO_EXPERIMENT for none); None outside Hydra's
    command line, where the choice is not recorded."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment") or NO_EXPERIMENT


def build_callbacks(
    cfg: DictConfig, extra: list[Callback] | None, has_logger: bool
) -> list[Callback]:
    """The configured callbacks plus `extra`, minus those the trainer settings rule out."""
    callbacks: list[Callback] = _instantiate_all(cfg.get("callbacks")) + list(extra or [])
    callbacks.append(SeedEachProcess(cfg.seed))
    callbacks.append(RecordProvenance(Path(cfg.paths.output_dir).name, experiment_name()))
    if not has_logger:  # logger=none: nothing for a learning-rate monitor to log to
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    bars = [cb for cb in callbacks if isinstance(cb, ProgressBar)]
    if bars and (cfg.trainer.get("enable_progress_bar") is False or not progress_bar_fits()):
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
        if cfg.trainer.get("enable_progress_bar") is not False:  # no terminal: a line per epoch
            callbacks.append(EpochLine())
    return callbacks


def resolve_sync_batchnorm(requested: bool, accelerator: str) -> bool:
    """SyncBatchNorm only where it runs: torch refuses it for CPU tensors (gloo), so CPU
    processes keep their own batch statistics (rank 0's are the ones saved)."""
    on_gpu = runs_on_gpu(accelerator)
    if requested and not on_gpu:
        log.info("trainer.sync_batchnorm is off: SyncBatchNorm needs GPUs, this run is on CPU")
    return bool(requested) and on_gpu


def build_trainer(
    trainer_cfg: DictConfig,
    callbacks: list[Callback],
    loggers: list[Any],
    checkpointing: bool = True,
) -> L.Trainer:
    """The configured Trainer, with `precision: auto` and `sync_batchnorm` resolved for this
    machine; `checkpointing=False` when no checkpoint callback is configured."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return instantiate(
        trainer_cfg,
        callbacks=callbacks,
        logger=loggers or False,
        precision=resolve_precision(trainer_cfg.get("precision"), accelerator),
        # Only the configured bar: without one, Lightning would add its own default bar.
        enable_progress_bar=any(isinstance(cb, ProgressBar) for cb in callbacks),
        sync_batchnorm=resolve_sync_batchnorm(trainer_cfg.get("sync_batchnorm"), accelerator),
        # No checkpoint callback configured (callbacks=none): no checkpoints, not Lightning's.
        enable_checkpointing=checkpointing,
    )


def launching_rank_zero() -> bool:
    """Whether this process will be global rank 0, known before the Trainer sets the ranks:
    from LOCAL_RANK (Lightning's launcher passes it to the processes it starts), RANK
    (torchrun), SLURM_PROCID, and NODE_RANK (Lightning's launcher on other nodes)."""
    node_rank = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return rank_zero_only.rank == 0 and int(node_rank) == 0


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint to resume, if any. A process Lightning's DDP launcher started (local
    rank > 0, child of the process that wrote RESUME_ENV) takes the launcher's: a newer
    `last.ckpt` may have appeared by the time it starts."""
    pid, _, path = os.environ.get(RESUME_ENV, "").partition(":")
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and pid == str(os.getppid()):
        return Path(path) if path else None
    resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.runs_dir)
    os.environ[RESUME_ENV] = f"{os.getpid()}:{resume_from or ''}"
    return resume_from


def is_tuner_trial(cfg: DictConfig) -> bool:
    """Whether this run is a tune.py trial (the sweeper reports each in one line)."""
    return cfg.get("trial_number") is not None


def check_process_count(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Refuse multi-process training inside a sweep: Lightning starts the other processes by
    running this command again, which under `-m` (every tune.py trial) reruns the sweep."""
    in_sweep = is_tuner_trial(cfg) or (
        HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    )
    if in_sweep and trainer.world_size > 1:
        raise ConfigError(
            f"trainer.devices x trainer.num_nodes = {trainer.world_size} processes cannot run "
            "inside a -m sweep or tune.py trial: sweep with trainer.devices=1 (start several "
            "tune.py workers to use more cores), then train the winner with python train.py"
        )


# Run settings every experiment logger records beside the module's hyperparameters.
RUN_PARAMS = (
    "seed",
    "deterministic",
    "data.batch_size",
    "data.val_fraction",
    "trainer.max_epochs",
    "trainer.precision",
    "trainer.devices",
    "trainer.strategy",
)


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings that are not the model's, as a nested dict of plain values."""
    params: dict[str, Any] = {}
    for key in RUN_PARAMS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            head, _, leaf = key.rpartition(".")
            (params.setdefault(head, {}) if head else params)[leaf] = value
    return params


def build_run(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> Run:
    """Check the config and every data file the run will read, then build its parts."""
    quiet_console()
    if is_tuner_trial(cfg):
        quiet_trial()
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    with user_errors_unwrapped():
        datamodule: EMNISTDataModule = instantiate(cfg.data)
        datamodule.check_files(test=bool(cfg.get("test")))
        model: CharacterClassifier = instantiate(
            cfg.model,
            num_classes=datamodule.num_classes,
            class_names=datamodule.characters,
            split=datamodule.split,
        )
        loggers = _instantiate_all(cfg.get("logger"))
        callbacks = build_callbacks(cfg, extra_callbacks, has_logger=bool(loggers))
    checkpointing = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
    resume_from = resume_checkpoint(cfg)
    if cfg.get("init_from"):
        if resume_from is not None:
            raise ConfigError(
                "ckpt_path resumes a run and init_from starts a new one from a model's "
                "weights: pass only one of them"
            )
        with user_errors_unwrapped():
            log.info("Starting from the weights of %s", start_from_weights(model, cfg.init_from))
    if resume_from is not None:
        check_resume_compatible(
            resume_from, model.card, (model.hparams.optimizer or {}).get("_target_")
        )
        if checkpointing is not None:
            # Keep writing where the run started, so its best-k tracking carries on.
            checkpointing.dirpath = os.path.realpath(resume_from.parent)
            if isinstance(checkpointing, ConsistentModelCheckpoint):
                checkpointing.resuming = True
    if checkpointing is not None and checkpointing.dirpath and launching_rank_zero():
        with checkpoint_folder_lock(checkpointing.dirpath):
            pass  # refuse a busy or unwritable folder now, before the Trainer says anything
    trainer = build_trainer(
        cfg.trainer, callbacks, loggers, checkpointing=checkpointing is not None
    )
    check_process_count(cfg, trainer)
    for logger in loggers:
        if isinstance(logger, EpochMLFlowLogger):
            logger.epoch_of = lambda: trainer.current_epoch
    return Run(
        cfg, datamodule, model, trainer, checkpointing, resume_from, Path(cfg.paths.output_dir)
    )


# -- fitting and testing ---------------------------------------------------------------------
@contextlib.contextmanager
def hold_checkpoint_folder(run: Run) -> Iterator[None]:
    """Own the checkpoint folder while the run writes into it (global rank 0 only, the
    process that writes checkpoints): refuse a second writer and clear what a killed writer
    left half-done."""
    folder = run.checkpointing.dirpath if run.checkpointing is not None else None
    if not folder or not launching_rank_zero():
        yield
        return
    with checkpoint_folder_lock(folder):
        for leftover in remove_partial_files(folder):
            log.info("Removed %s, left by a run that was killed while writing it", leftover)
        yield


def fit(run: Run) -> None:
    """Train (or resume) the model."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    if launching_rank_zero():
        OmegaConf.save(run.cfg, run.output_dir / "config_resolved.yaml")
    # Only now, once every check has passed: a logger creates its folder when first used.
    for logger in run.trainer.loggers:  # the module logs its own hyperparameters
        logger.log_hyperparams(run_params(run.cfg))
    if run.resume_from is not None:
        log.info("Resuming from %s", run.resume_from)
    # weights_only: Lightning reopens the file by path; it must stay plain data there too.
    with fit_status_recorded(run), lightning_settings_refused():
        run.trainer.fit(
            run.model, datamodule=run.datamodule, ckpt_path=run.resume_from, weights_only=True
        )


@contextlib.contextmanager
def lightning_settings_refused() -> Iterator[None]:
    """Lightning's MisconfigurationException (settings it finds unworkable once it knows the
    data, e.g. a limit_train_batches fraction under one batch) as one line, not a traceback."""
    try:
        yield
    except MisconfigurationException as exc:
        raise ConfigError(f"Lightning refused the trainer settings: {first_line(exc)}") from None


@contextlib.contextmanager
def fit_status_recorded(run: Run) -> Iterator[None]:
    """`running` while fitting, `finished` when the fit ends normally. A resume that fails
    before it writes a checkpoint (refused once fitting starts) puts the earlier status back,
    so a finished run stays what `ckpt_path=best` chooses."""
    folder = run.checkpointing.dirpath if run.checkpointing is not None else None
    previous = fit_status(Path(folder)) if folder else None
    before = _last_written(folder)
    record_fit_status(run, RUNNING)
    try:
        yield
    except BaseException:
        if previous is not None and _last_written(folder) == before:
            record_fit_status(run, previous)
        raise
    if not run.trainer.interrupted:
        record_fit_status(run, FINISHED)


def _last_written(folder: str | None) -> int | None:
    """When the folder's last.ckpt was written (None without one)."""
    try:
        return (Path(folder) / "last.ckpt").stat().st_mtime_ns if folder else None
    except OSError:
        return None


def record_fit_status(run: Run, status: str) -> None:
    """Mark the checkpoint folder's run as fitting or finished (rank 0), so that
    `ckpt_path=best` can skip runs that were killed or are still training."""
    folder = run.checkpointing.dirpath if run.checkpointing is not None else None
    if folder and launching_rank_zero():
        write_fit_status(folder, status)


def best_checkpoint(run: Run) -> str:
    return run.checkpointing.best_model_path if run.checkpointing is not None else ""


def test_best(run: Run) -> dict[str, float]:
    """Test the best checkpoint on the official test split (or just load its weights)."""
    best = best_checkpoint(run)
    if not run.cfg.get("test"):
        if best:
            checkpoint = read_checkpoint(best)
            run.model.load_state_dict(checkpoint["state_dict"])
            run.model.take_look_alikes(checkpoint)
        return {}
    # verbose=False: the run prints its results once, in write_artifacts' table.
    results = run.trainer.test(
        run.model,
        datamodule=run.datamodule,
        ckpt_path=best or None,
        weights_only=True,
        verbose=False,
    )
    return {k: float(v) for k, v in results[0].items()} if results else {}


# -- artifacts -------------------------------------------------------------------------------
def _metrics_csv(trainer: L.Trainer) -> Path | None:
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.log_dir) / "metrics.csv"
    return None


def write_test_report(run: Run) -> None:
    """Confusion matrix, per-class scores, top confusions and learning curves, from the
    predictions the test pass collected (under DDP, every process's, gathered)."""
    predictions = torch.cat(run.model.test_predictions or [torch.empty(0, dtype=torch.long)])
    labels = run.datamodule.test_labels()
    if len(predictions) != len(labels):  # trainer.limit_test_batches tested a part only
        log.info(
            "No report: the test pass covered %d of %d test images (limit_test_batches)",
            len(predictions),
            len(labels),
        )
        return
    pairs = write_report(
        predictions,
        labels,
        run.model.class_names,
        run.output_dir / REPORT_DIR,
        _metrics_csv(run.trainer),
    )
    shown = ", ".join(f"{true}->{pred} ({count})" for true, pred, count in pairs)
    log.info("Most confused (true->predicted, test images): %s", shown)


def write_artifacts(run: Run, metrics: dict[str, float]) -> None:
    """The report, the seed-style state_dict + model card, and metrics.json (rank 0 only)."""
    if not run.trainer.is_global_zero:
        return
    if run.cfg.get("test"):
        write_test_report(run)
    export_state_dict(run.model.card, run.model.model.net, run.output_dir)
    (run.output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    # A tuner trial's figures are in the sweeper's line for it (and in the trial's folder).
    level = logging.DEBUG if is_tuner_trial(run.cfg) else logging.INFO
    log.log(level, "Best checkpoint: %s", best_checkpoint(run) or "(checkpointing disabled)")
    log.log(level, "Results (%s):\n%s", run.output_dir, format_metrics_table(metrics))


def tracked_files(run: Run) -> list[Path]:
    """What a tracker keeps of a finished run: its model files (best checkpoint, the seed-style
    state_dict and card), resolved config, metrics and report images."""
    names = ("config_resolved.yaml", METRICS_FILE, STATE_DICT_NAME, CARD_NAME)
    files = [run.output_dir / name for name in names]
    files += sorted((run.output_dir / REPORT_DIR).glob("*.png"))
    best = best_checkpoint(run)
    if best and Path(best).is_relative_to(run.output_dir):
        files.append(Path(best))
    return [path for path in files if path.is_file()]


def track_outcome(run: Run, metrics: dict[str, float]) -> None:
    """Hand the finished run to its experiment trackers (rank 0 only)."""
    if not run.trainer.is_global_zero:
        return
    params = {**run_params(run.cfg), **dict(run.model.hparams)}
    finish_tracking(
        run.trainer.loggers,
        params,
        metrics,
        run.trainer.global_step,
        run.output_dir,
        tracked_files(run),
    )


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, float]:
    """Train (or resume) the configured model; test the best checkpoint; return the metrics.

    `extra_callbacks` lets a caller such as the tuner add callbacks (e.g. Optuna pruning)
    without a config of their own.
    """
    run = build_run(cfg, extra_callbacks)
    with hold_checkpoint_folder(run):
        fit(run)
        metrics = {"val/acc_best": float(run.model.best_val_acc), **test_best(run)}
    metrics["epochs"] = float(run.trainer.current_epoch)
    metrics["global_step"] = float(run.trainer.global_step)
    write_artifacts(run, metrics)
    track_outcome(run, metrics)
    return metrics
