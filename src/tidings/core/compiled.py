"""tidings' optional modules in C, and the switch that leaves them unused.

Each compiled module speeds up a hot path that Python also implements in full: where the
module was not built (no C compiler at install) or `TIDINGS_NO_EXTENSIONS` is set to
anything but 0, the Python implementation runs instead, with the same behaviour.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = "TIDINGS_NO_EXTENSIONS"
"""The environment variable that, set to 1, makes tidings run its Python implementations."""


def compiled(name: str) -> ModuleType | None:
    """The compiled module `name`; None where it was not built or is switched off."""
    if os.environ.get(NO_EXTENSIONS, "0") not in ("", "0"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
