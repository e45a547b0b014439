"""Errors a user can fix; entry points print them as one line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user (config, data files, checkpoints): the message says what to do."""


class ConfigError(UserError):
    """An override or config value that cannot work."""


class DataFilesError(UserError):
    """EMNIST files that are missing, truncated or corrupt."""


class CheckpointError(UserError):
    """A checkpoint that is missing or does not fit the model or data."""


class ModelFileError(CheckpointError):
    """A model file (or its model card) with a field that is missing, of the wrong type or out
    of range: refused before anything is built from it."""


class ImageInputError(UserError):
    """An image that cannot be read or holds no character."""
