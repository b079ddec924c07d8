"""Permissions of a store's files: its owner's alone unless configured otherwise."""

from __future__ import annotations

from tidings.core.errors import ConfigurationError

DEFAULT_MODE = "0600"


def file_mode(text: str) -> int:
    """The mode of the store's files from its octal text (`?mode=0640`), or a clear error."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or not mode & 0o600 == 0o600:
        raise ConfigurationError(
            f"mode must be octal permissions that let the owner read and write, such as "
            f"0600 (the owner alone, the default) or 0640 (the group reads too), not {text!r}"
        )
    return mode


def directory_mode(mode: int) -> int:
    """The mode of a directory holding files of `mode`: searchable by whoever reads them."""
    return mode | (mode & 0o444) >> 2
