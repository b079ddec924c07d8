"""`import tidings`: every public name is there, and loading the package loads no engine."""

from __future__ import annotations

import json
import subprocess
import sys

import tidings


def test_every_public_name_resolves() -> None:
    assert sorted(tidings.__all__) == sorted(tidings._EXPORTS)
    for name in tidings.__all__:
        assert getattr(tidings, name).__name__ == name
    assert set(tidings.__all__) <= set(dir(tidings))
    assert issubclass(tidings.TopicNotFoundError, tidings.TidingsError)


def test_importing_the_package_loads_neither_the_bus_nor_asyncio() -> None:
    script = "import json, sys, tidings; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    modules = set(json.loads(out))
    assert {"tidings.api.bus", "tidings.engines.base", "asyncio"}.isdisjoint(modules)
