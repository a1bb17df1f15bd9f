"""The errors a user can fix. The CLI prints their message in one line; any other exception is
a bug (or an environment failure) and keeps its traceback.

Each subclasses ValueError, so library callers that catch ValueError keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user must fix; the message names the setting, file or option and the fix."""


class ConfigError(UserError):
    """A configuration the user must fix; the message names the key."""


class DataError(UserError):
    """A dataset that cannot be used; the message names the file, row or column."""


class StatsFileError(UserError):
    """A statistics file that cannot be used; the message names the file, line and field."""


class ModelLoadError(UserError):
    """A model or tokenizer directory that cannot be loaded; the message names the setting."""


class LogFileError(UserError):
    """A JSON lines file that cannot be read; the message names the file and the line."""


class NonFiniteError(UserError):
    """A reward, loss or gradient that is NaN or infinite: the run stops before it reaches the
    weights; the message names the cause (the reward function and sample, or the step)."""


class VerifierError(RuntimeError):
    """The checks cannot run at all (a failed import or warm-up, a worker that never starts)."""
