"""Errors the command line reports as one clear line instead of a traceback."""


class DataError(ValueError):
    """Input data, a labels file or a setting is missing or inconsistent."""
