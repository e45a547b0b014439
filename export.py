"""Export a trained model to ONNX and to the seed's state_dict format: python export.py"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from emnist_lightning.checkpoints import export_state_dict, load_model, resolve_model_path
from emnist_lightning.cli import exit_on_user_error
from emnist_lightning.errors import ConfigError
from emnist_lightning.exporting import export_onnx

log = logging.getLogger(__name__)
FORMATS = ("onnx", "state_dict")


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    unknown = set(cfg.formats) - set(FORMATS)
    if unknown:
        raise ConfigError(
            f"formats={list(cfg.formats)} has unknown {sorted(unknown)}: use any of {list(FORMATS)}"
        )
    loaded = load_model(resolve_model_path(str(cfg.ckpt_path), cfg.train_runs_dir))
    out_dir = Path(cfg.paths.output_dir)
    if "onnx" in cfg.formats:
        log.info("ONNX: %s", export_onnx(loaded.card, loaded.model, out_dir / "model.onnx"))
    if "state_dict" in cfg.formats:
        weights = export_state_dict(loaded.card, loaded.model.net, out_dir)
        log.info("state_dict: %s (+ model_card.json)", weights)


if __name__ == "__main__":
    main()
