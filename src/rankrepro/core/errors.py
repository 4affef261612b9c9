"""Exceptions that the CLI turns into a one-line message and a non-zero exit (never a traceback)."""


class RankreproError(Exception):
    """Base class of every error a user can cause: bad config, missing data, corrupted files."""


class ConfigError(RankreproError):
    """The configuration is invalid; the message names the offending key."""


class DataError(RankreproError):
    """A dataset is missing or fails its checksum; the message says how to supply it."""


class CheckpointError(RankreproError):
    """A checkpoint file cannot be read (truncated, corrupted or from an incompatible run)."""


class ResultsError(RankreproError):
    """An experiment's results are missing, incomplete or modified; the message says how to regenerate them."""
