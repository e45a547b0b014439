"""Export a checkpoint to ONNX and to the seed's state_dict format: python export.py"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from emnist_lightning.checkpoints import export_state_dict, load_for_inference
from emnist_lightning.cli import exit_on_user_error
from emnist_lightning.errors import ConfigError
from emnist_lightning.exporting import export_onnx
from emnist_lightning.inference import resolve_model_path

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
    checkpoint = resolve_model_path(str(cfg.ckpt_path), cfg.train_runs_dir)
    model = load_for_inference(checkpoint)
    out_dir = Path(cfg.paths.output_dir)
    if "onnx" in cfg.formats:
        log.info("ONNX: %s", export_onnx(model, out_dir / "model.onnx"))
    if "state_dict" in cfg.formats:
        weights, mapping = export_state_dict(model, out_dir)
        log.info("state_dict: %s (+ %s)", weights, mapping.name)


if __name__ == "__main__":
    main()
