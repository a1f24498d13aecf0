"""A wheel of the installed serkit for the Pi, built without pip, setuptools or a network.

It is packed from the import packages themselves (so an editable checkout and a
regular install give the same wheel) with the installed distribution's metadata,
whose base requirements are the edge install; training artifacts (.keras, plots)
are left out because nothing on the Pi reads them.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import zipfile
from pathlib import Path

DIST = "serkit"
# The stage packages map to the repository's top-level folders in a checkout and sit inside serkit/ once installed.
PACKAGES = (
    "serkit",
    *(f"serkit.{stage}" for stage in ("edge", "trainer", "convert", "deploy", "models", "firmware_configs")),
)
SKIP_SUFFIXES = (".pyc", ".keras", ".png")
# Fixed timestamps keep the wheel byte-identical for identical sources.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _package_files(package: str) -> dict[str, Path]:
    """Archive name → file for everything under one import package (data folders included)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package} is not importable")
    root = Path(next(iter(spec.submodule_search_locations)))
    prefix = package.replace(".", "/")
    files = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in SKIP_SUFFIXES:
            continue
        files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return files


def _metadata(dist: importlib.metadata.Distribution) -> str:
    meta = dist.metadata
    lines = ["Metadata-Version: 2.1", f"Name: {DIST}", f"Version: {dist.version}"]
    for key in ("Summary", "License", "Requires-Python"):
        if meta.get(key):
            lines.append(f"{key}: {meta[key]}")
    lines += [f"Provides-Extra: {e}" for e in meta.get_all("Provides-Extra") or []]
    lines += [f"Requires-Dist: {r}" for r in meta.get_all("Requires-Dist") or []]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out_dir: Path) -> Path:
    """Write serkit-<version>-py3-none-any.whl into out_dir and return its path."""
    dist = importlib.metadata.distribution(DIST)
    version = dist.version
    info = f"{DIST}-{version}.dist-info"
    # Installed, serkit/ already holds the stage packages: keyed by archive name, each file is packed once.
    files: dict[str, Path] = {}
    for package in PACKAGES:
        files.update(_package_files(package))
    entries = [(name, path.read_bytes()) for name, path in sorted(files.items())]
    entries.append((f"{info}/METADATA", _metadata(dist).encode()))
    wheel_text = "Wheel-Version: 1.0\nGenerator: serkit-deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{info}/WHEEL", wheel_text.encode()))
    entries.append((f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()))
    record = [_record_line(n, d) for n, d in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{DIST}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, ZIP_DATE)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return target
