"""One exception type per kind of user mistake; each message names the file/field and what to do.

The CLI and the pytest plugin print ``str(error)`` as a single line, never a traceback.
"""

from __future__ import annotations


class SimonscaError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class ModelFileError(SimonscaError):
    """A model or adapter file is missing, truncated, not GGUF, or cannot be loaded."""


class AdapterMismatch(SimonscaError):
    """A LoRA adapter does not fit the base model it is applied to."""


class ContextTooSmall(SimonscaError):
    """A prompt (plus its answer budget) does not fit the model's context window."""


class DatasetError(SimonscaError):
    """Bad dataset parameters or a dataset file that cannot be read."""


class ConfigError(SimonscaError):
    """A bad option or ``[tool.simonsca]`` setting."""


class OutputExistsError(SimonscaError):
    """Refusing to overwrite a file the user already has (pass --force to replace it)."""


class StoredRunError(SimonscaError):
    """A stored run (a report folder or its ``report.json``) is missing, unreadable, or of a
    schema this simonsca cannot read."""


class RunsDiffer(SimonscaError):
    """Two stored runs cannot be compared item by item: they were not run on the same items."""
