"""What goes to the Pi: one folder with the wheel, the model, the merged config, the unit and install.sh.

Everything here is local and pure apart from writing the folder, so the bundle can
be checked in a test, written for an SD card (`--bundle DIR`) or sent over SSH.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serkit.edge.config import KEYS, load_toml, toml_value
from serkit.edge.errors import SerkitError
from serkit.edge.spec import spec_path_for

# Where install.sh puts things on the Pi (the unit file names the same paths).
PREFIX = "/opt/serkit"
ETC = "/etc/serkit"
CURRENT_MODEL = f"{PREFIX}/models/current/model.tflite"
TLS_KEYS = ("ca_file", "cert_file", "key_file")
SECRET_KEYS = tuple(name for name, key in KEYS.items() if key.secret)


def board_config_path(board: str) -> Path:
    from serkit.firmware_configs import BOARDS_DIR, board_names

    path = BOARDS_DIR / f"{board}.toml"
    if not path.is_file():
        raise SerkitError(f"unknown board {board!r}; known boards: {', '.join(board_names())}")
    return path


def model_id(tflite: Path) -> str:
    """A version folder name that changes whenever the model's bytes do."""
    return f"{tflite.stem}-{hashlib.sha256(tflite.read_bytes()).hexdigest()[:10]}"


@dataclass(frozen=True)
class MergedConfig:
    values: dict[str, Any]  # goes into /etc/serkit/serkit.toml
    secrets: dict[str, Any]  # goes into /etc/serkit/serkit.env (mode 0600)
    tls_files: dict[str, Path] = field(default_factory=dict)  # key -> local file, copied to /etc/serkit/tls/
    sources: tuple[str, ...] = ()


def merge_config(board: str | None, user_config: str | None) -> MergedConfig:
    """Board defaults, then the user's keys on top; secrets split out, TLS files and the model re-pointed."""
    values: dict[str, Any] = {}
    sources = []
    if board:
        path = board_config_path(board)
        values.update(load_toml(path))
        sources.append(f"board {board} ({path.name})")
    if user_config:
        values.update(load_toml(user_config))
        sources.append(str(user_config))
    secrets = {k: values.pop(k) for k in SECRET_KEYS if k in values}
    tls_files = {}
    for key in TLS_KEYS:
        if values.get(key):
            local = Path(values[key])
            if not local.is_file():
                raise SerkitError(f"{user_config}: '{key}': {local}: no such file")
            tls_files[key] = local
            values[key] = f"{ETC}/tls/{local.name}"
    values.pop("model", None)  # the bundle's model is the one deployed
    values["model"] = CURRENT_MODEL
    return MergedConfig(values, secrets, tls_files, tuple(sources))


def config_toml(merged: MergedConfig) -> str:
    lines = [
        "# serkit agent configuration written by serkit deploy",
        f"# from: {', '.join(merged.sources) or 'defaults'}; secrets live in {ETC}/serkit.env",
    ]
    for key, value in merged.values.items():
        lines.append(f"# {KEYS[key].help}")
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def env_file(secrets: dict[str, Any]) -> str:
    # systemd's EnvironmentFile and a shell's `.` both read KEY='value'; single quotes keep the value literal.
    lines = []
    for key, value in secrets.items():
        text = str(value)
        if "'" in text or "\n" in text:
            raise SerkitError(f"'{key}' may not contain a single quote or a newline")
        lines.append(f"SERKIT_{key.upper()}='{text}'")
    return "\n".join(lines) + "\n"


def needs_mic(values: dict[str, Any]) -> bool:
    return str(values.get("source", KEYS["source"].default)).startswith("mic")


@dataclass(frozen=True)
class Bundle:
    path: Path
    wheel: str
    model_id: str
    model_name: str
    extras: str
    files: tuple[str, ...]


def write_bundle(out: Path, model: Path, merged: MergedConfig | None, board: str | None) -> Bundle:
    """Write the bundle folder; merged=None makes a model-only bundle (wheel and config are left out)."""
    from serkit.deploy.wheel import build_wheel
    from serkit.firmware_configs import SERVICE_FILE

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SerkitError(f"--bundle {out}: exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    mid = model_id(model)
    (out / "model").mkdir()
    shutil.copyfile(model, out / "model" / "model.tflite")
    shutil.copyfile(spec_path_for(model), out / "model" / "model.json")
    wheel_name, extras = "", ""
    if merged is not None:
        wheel_name = build_wheel(out).name
        extras = "mic" if needs_mic(merged.values) else ""
        (out / "serkit.toml").write_text(config_toml(merged))
        if merged.secrets:
            env = out / "serkit.env"
            env.touch(mode=0o600)
            env.write_text(env_file(merged.secrets))
        for local in merged.tls_files.values():
            (out / "tls").mkdir(exist_ok=True)
            shutil.copyfile(local, out / "tls" / local.name)
        shutil.copyfile(SERVICE_FILE, out / "serkit.service")
        # The versions the suite passed with, one file per Pi architecture; install.sh picks its own.
        shutil.copytree(Path(__file__).with_name("constraints"), out / "constraints")
    install = Path(__file__).with_name("install.sh")
    shutil.copyfile(install, out / "install.sh")
    (out / "install.sh").chmod(0o755)
    from serkit.edge import version

    settings = {
        "SERKIT_VERSION": version(),
        "BOARD": board or "",
        "WHEEL": wheel_name,
        "EXTRAS": extras,
        "MODEL_ID": mid,
    }
    (out / "bundle.env").write_text("".join(f"{k}='{v}'\n" for k, v in settings.items()))
    files = tuple(sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()))
    manifest = {
        "format": "serkit-bundle",
        **{k.lower(): v for k, v in settings.items()},
        "model_name": model.stem,
        "files": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Bundle(out, wheel_name, mid, model.stem, extras, (*files, "manifest.json"))
