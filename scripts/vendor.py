"""Fetch the browser assets recorded in vendor.toml from npm, exactly those versions.

`python scripts/vendor.py` (or `make vendor`) runs `npm pack NAME@VERSION` for each
package, checks the tarball against the recorded integrity, and writes the named files
into their directory beside vendor.toml, removing any other file there. Standard library
only, and npm.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "tidings" / "server" / "http" / "static"
MANIFEST = STATIC / "vendor.toml"


class VendorError(Exception):
    """A package could not be fetched as recorded."""


def integrity(tarball: Path) -> str:
    """The tarball's digest in npm's form, sha512-<base64>."""
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def pack(spec: str, into: Path) -> Path:
    """Download the npm tarball of `spec` (NAME@VERSION) into `into`; its path."""
    try:
        result = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", str(into)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise VendorError("npm is not installed; install Node.js's npm and run again") from e
    if result.returncode != 0:
        raise VendorError(
            f"npm pack {spec} failed; check the registry is reachable:\n{result.stderr}"
        )
    return into / result.stdout.strip().splitlines()[-1]


def vendor(directory: str, entry: dict[str, Any], scratch: Path) -> None:
    """Fetch one package and write its recorded files into STATIC/directory."""
    spec = f"{entry['package']}@{entry['version']}"
    tarball = pack(spec, scratch)
    found = integrity(tarball)
    if found != entry["integrity"]:
        raise VendorError(
            f"{spec} from npm has integrity {found}, not the {entry['integrity']} recorded in "
            f"{MANIFEST.name}; nothing was written. If the version was changed on purpose, "
            f"record `npm view {spec} dist.integrity`"
        )
    wanted: list[str] = entry["files"]
    with tarfile.open(tarball) as archive:
        contents = {name: archive.extractfile(f"package/{name}") for name in wanted}
        blobs = {name: member.read() for name, member in contents.items() if member}
    missing = sorted(set(wanted) - set(blobs))
    if missing:
        raise VendorError(f"{spec} has no {', '.join(missing)}; fix `files` in {MANIFEST.name}")
    target = STATIC / directory
    target.mkdir(parents=True, exist_ok=True)
    names = {Path(name).name for name in wanted}
    for stale in target.iterdir():
        if stale.name not in names:
            stale.unlink()
    for name, blob in blobs.items():
        (target / Path(name).name).write_bytes(blob)
    print(f"{spec} -> {target.relative_to(ROOT)}: {', '.join(sorted(names))}")


def main() -> int:
    """Vendor every package of the manifest; 1 with the reason if one fails."""
    manifest = tomllib.loads(MANIFEST.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for directory, entry in manifest.items():
                vendor(directory, entry, Path(scratch))
        except VendorError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
