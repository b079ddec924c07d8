"""Optional parts of tidings come in extras; a missing one is named with its install line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tidings.core.errors import ConfigurationError


@contextmanager
def require_extra(extra: str, what: str) -> Iterator[None]:
    """Turn a missing third-party module imported inside into the extra that provides it."""
    try:
        yield
    except ModuleNotFoundError as e:
        # a module of tidings itself missing is a broken install, not a missing extra
        if (e.name or "tidings").partition(".")[0] == "tidings":
            raise
        raise ConfigurationError(
            f'{what} needs the {extra} extra: pip install "tidings[{extra}]"'
        ) from e
