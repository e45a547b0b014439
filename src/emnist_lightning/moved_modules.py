"""Old module paths keep working after the package was grouped into folders.

Checkpoints record their optimizer's `_target_` (resume compares it) and users' experiment
files name augmentations and callbacks by module path, so `emnist_lightning.augment.X` must
still find `emnist_lightning.data.augment.X`. A meta-path finder answers the old names with
the new modules (the same module objects, so classes compare equal); nothing else is aliased.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# Old module path -> where it lives now (the package was regrouped in November 2026).
MOVED_MODULES = {
    "emnist_lightning.labels": "emnist_lightning.data.labels",
    "emnist_lightning.idx_files": "emnist_lightning.data.idx_files",
    "emnist_lightning.sampling": "emnist_lightning.data.sampling",
    "emnist_lightning.augment": "emnist_lightning.data.augment",
    "emnist_lightning.nets": "emnist_lightning.models.nets",
    "emnist_lightning.model_card": "emnist_lightning.models.card",
    "emnist_lightning.module": "emnist_lightning.models.classifier",
    "emnist_lightning.optimizers": "emnist_lightning.models.optimizers",
    "emnist_lightning.random_states": "emnist_lightning.models.random_states",
    "emnist_lightning.callbacks": "emnist_lightning.training.callbacks",
    "emnist_lightning.checkpoint_io": "emnist_lightning.training.checkpoint_io",
    "emnist_lightning.precision": "emnist_lightning.training.precision",
    "emnist_lightning.tracking": "emnist_lightning.training.tracking",
    "emnist_lightning.checkpoints": "emnist_lightning.inference.model_files",
    "emnist_lightning.preprocess": "emnist_lightning.inference.preprocess",
    "emnist_lightning.predicting": "emnist_lightning.inference.predict",
    "emnist_lightning.exporting": "emnist_lightning.inference.export",
    "emnist_lightning.evaluating": "emnist_lightning.evaluation.evaluate",
    "emnist_lightning.report": "emnist_lightning.evaluation.report",
    "emnist_lightning.font_set": "emnist_lightning.evaluation.font_set",
    "emnist_lightning.validation": "emnist_lightning.config_checks",
}
# Old `module.Name` paths whose module became a package of the same name: the package
# answers them lazily (see data/__init__.py and training/__init__.py).
MOVED_NAMES = {
    "emnist_lightning.data.EMNISTDataModule": "emnist_lightning.data.datamodule.EMNISTDataModule",
    "emnist_lightning.training.train": "emnist_lightning.training.run.train",
}


def current_path(dotted: str) -> str:
    """The path a possibly old `module.Name` string names today (unknown paths unchanged)."""
    if dotted in MOVED_NAMES:
        return MOVED_NAMES[dotted]
    module, _, name = dotted.rpartition(".")
    if module in MOVED_MODULES:
        return f"{MOVED_MODULES[module]}.{name}"
    return dotted


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The new module already ran when it was imported; nothing more to do."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201 (importlib API)
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Answer the old module paths (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


def lazy_names(package: str, names: dict[str, str]):  # noqa: ANN201 (a module __getattr__)
    """A module-level `__getattr__` that imports `names` (name -> module) on first use."""

    def __getattr__(name: str):  # noqa: ANN202
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
