"""Per-board agent configs, ALSA examples and the systemd unit, shipped with the package for `serkit deploy`."""

from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent
BOARDS_DIR = FIRMWARE_DIR / "boards"
SERVICE_FILE = FIRMWARE_DIR / "systemd" / "serkit.service"


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))
