"""The agent's configuration: one flat set of keys, from defaults < TOML file < environment < flags.

Every key is also a command-line flag (`queue_size` ↔ `--queue-size`), so a board's
TOML file and a one-off flag speak the same language. Secrets (the MQTT password)
can come from the environment, which is what a systemd EnvironmentFile provides.
"""

import math
import os
import re
from collections import namedtuple
from typing import Any, NamedTuple

from serkit.edge.errors import SerkitError
from serkit.edge.publisher import Credentials, parse_broker
from serkit.edge.sources import parse_source

DAY_S = 86400.0  # the longest any duration may be: timers beyond it overflow the platform's wait
ENV_PREFIX = "SERKIT_"  # SERKIT_PASSWORD, SERKIT_USERNAME, SERKIT_BROKER, ...
MASK = "********"


def default_device_id() -> str:
    import platform  # here, not socket: numpy has loaded platform already, and node() is the host name

    return clean_id(platform.node()) or "serkit"


def clean_id(text: str) -> str:
    """Restrict to [a-zA-Z0-9_-], the characters MQTT topics and Home Assistant IDs both accept."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_")


class Key(NamedTuple):
    """One setting: its default (whose type is the key's type), help text and bounds."""

    default: bool | int | float | str
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False

    @property
    def kind(self) -> str:
        """'bool', 'int', 'float' or 'str'."""
        return type(self.default).__name__


# Every setting of the agent, declared once: AgentConfig, the command line, the TOML file and the docs' table are
# built from this table.
KEYS: dict[str, Key] = {
    # Audio
    "source": Key("mic", "mic, mic:NAME (substring) or mic:INDEX, file:PATH.wav, or - for raw S16_LE on stdin"),
    "rate": Key(16000, "sample rate of raw PCM on stdin (--source -)", lo=8000, hi=192000),
    "pace": Key("realtime", "file source: realtime, or fast (as fast as the CPU allows)", choices=("realtime", "fast")),
    "mic_chunk_s": Key(0.1, "microphone read size in seconds", lo=0.01, hi=1.0),
    "watchdog_s": Key(10.0, "warn when the microphone delivers only zeros for this long (0 = off)", lo=0, hi=DAY_S),
    # Model
    "model": Key("", "the .tflite model (its .json spec beside it); empty = the shipped default"),
    "threads": Key(1, "interpreter threads", lo=1, hi=16),
    "hop_s": Key(0.0, "seconds between classification windows (0 = the model's hop)", lo=0, hi=10),
    # Voice-activity gate
    "gate": Key(True, "classify only windows that contain speech-like energy"),
    "gate_dbfs": Key(-55.0, "absolute floor: quieter windows are silence (dB full scale)", lo=-120, hi=0),
    "gate_snr_db": Key(10.0, "a frame is active this many dB above the tracked noise floor", lo=0, hi=60),
    "gate_active": Key(0.2, "fraction of active frames a window needs to count as speech", lo=0, hi=1),
    "on_silence": Key("nothing", "what to publish for silence: nothing, or silence", choices=("nothing", "silence")),
    "silence_after_s": Key(
        5.0, "with on_silence = silence: publish it once no speech was heard for this long", lo=0, hi=DAY_S
    ),
    # Decision
    "smoothing": Key(
        0.5, "weight of the newest window in the moving average of probabilities (1 = none)", lo=0.01, hi=1
    ),
    "min_confidence": Key(
        -1.0, "smoothed probability a state needs (-1 = the model's suggested threshold)", lo=-1, hi=1
    ),
    "hysteresis": Key(0.1, "a new emotion must beat the current one by this much", lo=0, hi=1),
    "hold": Key(2, "windows in a row a new emotion must lead before it is published", lo=1, hi=100),
    "state_interval_s": Key(
        5.0, "while speech goes on, re-publish an unchanged state this often (0 = every window)", lo=0, hi=DAY_S
    ),
    "raw": Key(False, "also publish every window's unsmoothed result on <prefix>/<device>/raw"),
    # MQTT
    "broker": Key("mqtt://localhost:1883", "mqtt://HOST[:PORT], mqtts://HOST[:PORT], or none (print states to stdout)"),
    "device_id": Key("", "names the device in every topic (default: the host name)"),
    "username": Key("", "MQTT user name"),
    "password": Key("", "MQTT password (better: SERKIT_PASSWORD in the environment)", secret=True),
    "ca_file": Key("", "CA certificate for mqtts:// (default: the system's)"),
    "cert_file": Key("", "client certificate for mqtts:// (optional)"),
    "key_file": Key("", "client key for mqtts:// (optional)"),
    "topic_prefix": Key("serkit", "first level of every serkit topic"),
    "discovery": Key(True, "publish Home Assistant MQTT discovery"),
    "discovery_prefix": Key("homeassistant", "Home Assistant's discovery prefix"),
    "queue_size": Key(
        1000, "results kept while the broker is unreachable (then the oldest are dropped)", lo=1, hi=10_000_000
    ),
    "stats_interval_s": Key(60.0, "publish stats this often (0 = never)", lo=0, hi=DAY_S),
    "keepalive_s": Key(30, "MQTT keepalive", lo=5, hi=3600),
    "flush_timeout_s": Key(5.0, "on exit, wait this long for queued results to be delivered", lo=0, hi=DAY_S),
    # Live page
    "http": Key(
        "", "serve the live page and its JSON API on [HOST:]PORT (127.0.0.1 when only a port is given; empty = off)"
    ),
    "http_token": Key("", "require this token for the page (Bearer header or ?token=)", secret=True),
    # Logging
    "log_level": Key(
        "info",
        "stderr log level: info says what the agent does (start, connections, state changes)",
        choices=("debug", "info", "warning", "error"),
    ),
    "quiet": Key(False, "only the state changes, on stdout ('hall: happy 72%'); errors still on stderr"),
}


class AgentConfig(namedtuple("AgentConfig", KEYS, defaults=[k.default for k in KEYS.values()])):
    """Every setting of the agent (its default, help and bounds in KEYS); `config._replace(key=value)` makes a
    changed copy."""

    __slots__ = ()

    def effective_device_id(self) -> str:
        return self.device_id or default_device_id()

    def credentials(self) -> Credentials:
        return Credentials(self.username, self.password, self.ca_file, self.cert_file, self.key_file)

    def masked(self) -> dict[str, Any]:
        return {name: (MASK if KEYS[name].secret and value else value) for name, value in self._asdict().items()}

    def __repr__(self) -> str:  # secrets masked, wherever a config is printed or logged
        return f"AgentConfig({', '.join(f'{name}={value!r}' for name, value in self.masked().items())})"

    def to_toml(self) -> str:
        """The effective configuration as a TOML file that --config reads back (secrets masked)."""
        lines = ["# serkit agent configuration (serkit run --print-config)"]
        for name, value in self.masked().items():
            lines.append(f"# {KEYS[name].help}")
            lines.append(f"{name} = {toml_value(value)}")
        return "\n".join(lines) + "\n"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def coerce(key: str, value: Any, where: str, typed: bool = False) -> Any:
    """Check one key's value (from TOML, environment or a flag); a clear error names the key.

    Text from the environment or a flag is parsed ("true", "5"); a TOML file has types of its own
    (`typed`), so raw = "yes" there is a string where a boolean belongs, and refused."""
    k = KEYS.get(key)
    if k is None:
        raise SerkitError(f"{where}: unknown key '{key}' (known keys: serkit run --print-config)")
    kind = k.kind
    if isinstance(value, str) and kind != "str" and not typed:
        value = _parse_text(key, value, kind, where)
    if kind == "bool":
        if not isinstance(value, bool):
            raise SerkitError(f"{where}: '{key}' must be true or false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SerkitError(f"{where}: '{key}' must be an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SerkitError(f"{where}: '{key}' must be a number, got {value!r}")
        value = float(value)
    elif not isinstance(value, str):
        raise SerkitError(f"{where}: '{key}' must be a string, got {value!r}")
    if k.choices and value not in k.choices:
        raise SerkitError(f"{where}: '{key}' must be one of {', '.join(k.choices)}, got {value!r}")
    lo, hi = k.lo, k.hi
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SerkitError(f"{where}: '{key}' must be between {lo} and {hi}, got {value!r}")
    return value


def _parse_text(key: str, text: str, kind: str, where: str) -> Any:
    if kind == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SerkitError(f"{where}: '{key}' must be true or false, got {text!r}")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise SerkitError(
            f"{where}: '{key}' must be {'an integer' if kind == 'int' else 'a number'}, got {text!r}"
        ) from None


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    import tomllib

    from serkit.edge.files import read_text

    p = os.fspath(path)
    try:
        data = tomllib.loads(read_text(p, "config file"))
    except tomllib.TOMLDecodeError as exc:
        raise SerkitError(f"{p}: not valid TOML ({exc})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise SerkitError(f"{p}: [{key}] tables are not used; write plain 'key = value' lines")
    return {k: coerce(k, v, p, typed=True) for k, v in data.items()}


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """SERKIT_<KEY> variables, e.g. SERKIT_PASSWORD from a systemd EnvironmentFile."""
    env = os.environ if environ is None else environ
    out = {}
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if name in env:
            out[key] = coerce(key, env[name], f"environment {name}")
    return out


def parse_http(value: str) -> tuple[str, int] | None:
    """'[HOST:]PORT' → (host, port); a bare port binds 127.0.0.1; port 0 is any free one; '' is off."""
    text = value.strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port < 65536 or not host:
        raise SerkitError(f"'http' must be PORT or HOST:PORT with a port from 0 (any free) to 65535, got {value!r}")
    return host, port


def build_config(
    config_file: str | None = None, flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> AgentConfig:
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_toml(config_file))
    values.update(from_environment(environ))
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = coerce(key, value, f"--{key.replace('_', '-')}")
    config = AgentConfig(**values)
    parse_broker(config.broker)
    parse_source(config.source)
    parse_http(config.http)
    if config.device_id and not re.fullmatch(r"[a-zA-Z0-9_-]+", config.device_id):
        raise SerkitError(f"'device_id' may only contain letters, digits, _ and -, got {config.device_id!r}")
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(config, key)
        if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            raise SerkitError(f"'{key}' must be a topic level without wildcards or leading/trailing '/', got {value!r}")
        if value.startswith("$"):  # $SYS/..., $share/...: the broker's own namespaces, where publishing is denied
            raise SerkitError(f"'{key}' may not start with '$' (the broker's own topics), got {value!r}")
    return config
