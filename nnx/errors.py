"""Errors a user can cause. Each message is one sentence saying what is wrong and what to do."""


class NnxError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class DataError(NnxError):
    """A data file is missing, corrupt, truncated or of the wrong kind."""


class InputError(NnxError, ValueError):
    """An argument has the wrong shape, range, dtype or device."""


class DivergenceError(NnxError):
    """Training produced a non-finite loss."""
