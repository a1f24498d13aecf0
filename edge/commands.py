"""`serkit run`, `serkit devices` and `serkit demo`: the edge commands (edge install only)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from serkit.edge.argtypes import positive_float
from serkit.edge.config import KEYS, AgentConfig, build_config
from serkit.edge.errors import MissingExtraError, SerkitError

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("serkit")
# A string, like every path on the start path of `serkit run`: pathlib (with urllib.parse and ipaddress) costs
# about 4 ms to import, which the commands that need it (demo, features) pay themselves.
SAMPLES_DIR = os.path.join(os.path.dirname(__file__), "samples")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("serkit: %(levelname)s: %(message)s"))
    root = logging.getLogger("serkit")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _stop_on_signals(stop: threading.Event, abort: threading.Event | None = None) -> None:
    """SIGINT/SIGTERM: the first stops listening (and the queue drains), a second ends that wait too."""

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set() and abort is not None:
            log.warning("%s again: not waiting for the queue to drain", name)
            abort.set()
            return
        log.info("%s: stopping", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config key, default None so the TOML file's value stands unless a flag is given."""
    for name, key in KEYS.items():
        flag = "--" + name.replace("_", "-")
        text = key.help.replace("%", "%%")  # argparse formats help with %
        if key.kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, default=None, metavar=name.upper(), help=f"{text} (default: {key.default!r})")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in KEYS}


def cmd_run(args: argparse.Namespace) -> int:
    from serkit.edge.agent import Agent, load_model, make_dashboard, make_publisher
    from serkit.edge.sources import open_source

    config = build_config(args.config, _flags(args))
    if args.print_config:
        sys.stdout.write(config.to_toml())
        return 0
    setup_logging("error" if config.quiet else config.log_level)
    model = load_model(config.model, config.threads)  # before any audio is opened
    publisher = make_publisher(config, model.spec, model.name)
    dashboard = make_dashboard(config, model)
    source = open_source(
        config.source,
        model.spec.features.sample_rate,
        config.pace,
        config.rate,
        config.mic_chunk_s,
        config.watchdog_s,
    )
    stop, abort = threading.Event(), threading.Event()
    _stop_on_signals(stop, abort)
    agent = Agent(config, model, source, publisher, dashboard.feed if dashboard else None)
    if hasattr(source, "seconds"):  # a file: its length is known before it starts
        agent.check_length(source.seconds)
    delivery = _run_agent(agent, stop, abort, dashboard)
    if not stop.is_set():  # the source ended by itself: its audio and every state it gave are accounted for
        agent.check_ending()
        if delivery.lost:
            status = publisher.status()
            why = f": {status['last_error']}" if status["last_error"] else ""
            raise SerkitError(f"{delivery.describe()}; broker {status['broker']}{why}")
    if delivery.lost:
        log.warning("%s", delivery.describe())
    return 0


def _run_agent(agent: Any, stop: threading.Event, abort: threading.Event, dashboard: Any = None) -> Any:
    """The agent until its source ends or `stop` is set, with its live page served meanwhile, if any."""
    if dashboard is None:
        return agent.run(stop, abort)
    dashboard.start(agent.live_tick)
    try:
        return agent.run(stop, abort)
    finally:
        dashboard.close()


def register_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the edge agent: audio → int8 model → emotion states over MQTT",
        description=(
            "Listen (microphone, WAV file or raw PCM on stdin), classify speech emotion with the int8 model and "
            "publish states on <topic_prefix>/<device_id>/emotion, with Home Assistant discovery. Settings come from "
            "--config FILE.toml, then SERKIT_<KEY> environment variables, then flags."
        ),
    )
    p.add_argument("--config", help="TOML file of 'key = value' lines (see --print-config)")
    p.add_argument("--print-config", action="store_true", help="print the effective configuration (secrets masked)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_run)


# -- devices ----------------------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from serkit.edge.sources import input_devices, open_pyaudio

    pa = open_pyaudio()
    try:
        devices = input_devices(pa)
    finally:
        pa.terminate()
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    if not devices:
        print("no input devices (is the microphone plugged in? is the user in the 'audio' group?)")
        return 1
    print(f"{'index':>5}  {'channels':>8}  {'default Hz':>10}  supported Hz (16000 is used when offered)  name")
    for d in devices:
        rates = ",".join(str(r) for r in d["rates"]) or "-"
        print(f"{d['index']:>5}  {d['channels']:>8}  {d['default_rate']:>10}  {rates:<41}  {d['name']}")
    print("use: serkit run --source mic:INDEX or mic:NAME")
    return 0


def register_devices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list audio input devices and their sample rates")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)


# -- demo -------------------------------------------------------------------------------------------------
def start_embedded_broker() -> tuple[int, Any]:
    """An in-process MQTT broker (amqtt) on a free loopback port; returns (port, stop function)."""
    try:
        from amqtt.broker import Broker
    except ImportError:
        raise MissingExtraError(
            "the demo's embedded broker needs the 'demo' extra (amqtt not installed): pip install 'serkit[demo]', "
            "or give --broker mqtt://HOST:PORT"
        ) from None
    import asyncio
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready, stopping, failed = threading.Event(), threading.Event(), []
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }

    def serve() -> None:
        async def main() -> None:
            broker = Broker(config)
            await broker.start()
            ready.set()
            while not stopping.is_set():
                await asyncio.sleep(0.05)
            await broker.shutdown()

        try:
            asyncio.run(main())
        except Exception as exc:  # reported to the main thread, which says it in one line
            failed.append(exc)
            ready.set()

    for name in ("amqtt", "transitions", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    thread = threading.Thread(target=serve, name="serkit-demo-broker", daemon=True)
    thread.start()
    if not ready.wait(15) or failed:
        raise SerkitError(f"the embedded demo broker did not start: {failed[0] if failed else 'timeout'}")

    def stop() -> None:
        stopping.set()
        thread.join(5)

    return port, stop


def demo_clips(folder: Path, rate: int) -> list[tuple[str, np.ndarray]]:
    from serkit.edge.audio import read_wav

    paths = sorted(folder.glob("*.wav"))
    if not paths:
        raise SerkitError(f"{folder}: no .wav clips for the demo")
    return [(p.name, read_wav(p, rate)[0]) for p in paths]


SYNTHETIC_NOTE = (
    "the bundled clips are synthetic espeak-ng voices with no acted emotion: their labels show how the messages "
    "flow, not how accurate the model is (accuracy on held-out human speakers: models/README.md)"
)


def cmd_demo(args: argparse.Namespace) -> int:
    from serkit.edge.agent import Agent, load_model, make_dashboard, make_publisher

    setup_logging("warning")
    model = load_model(args.model or "", 1)
    broker, address, stop_broker = _demo_broker(args.broker)
    from_clips = args.source == "clips"
    device = "demo"
    config = AgentConfig(
        broker=broker,
        device_id=device,
        pace=args.pace,
        on_silence="silence",
        stats_interval_s=0,
        http=args.http,
        raw=True,
        source="file:clips" if from_clips else args.source,
    )
    try:
        source, spans = _demo_source(args, config, model.spec.features.sample_rate)
        dashboard = make_dashboard(config, model)
        with _DemoViewer(broker, address, device) as viewer:
            what = f"{len(spans)} bundled clips" if from_clips else config.source
            name = os.path.basename(model.path)
            print(f"== serkit demo: {name} on {what}; messages as a subscriber on {broker} sees them")
            if from_clips:
                print(f"== note: {SYNTHETIC_NOTE}")
            agent = Agent(
                config, model, source, make_publisher(config, model.spec, model.name), dashboard and dashboard.feed
            )
            stop, abort = threading.Event(), threading.Event()
            if not from_clips:
                _stop_on_signals(stop, abort)
                print("== listening until Ctrl-C")
            delivery = _run_agent(agent, stop, abort, dashboard)
            time.sleep(0.5)  # the last messages' way back to the viewer
    finally:
        if stop_broker:
            stop_broker()
    if from_clips:
        _print_per_clip(viewer.states(), spans)
    if delivery.lost:
        raise SerkitError(f"{delivery.describe()} to {broker}")
    return 0


def _demo_broker(given: str | None) -> tuple[str, Any, Any]:
    """(broker URL, its address, stop function or None): the one given, or an embedded one started now."""
    from serkit.edge.publisher import parse_broker

    if not given:
        port, stop = start_embedded_broker()
        given = f"mqtt://127.0.0.1:{port}"
        return given, parse_broker(given), stop
    address = parse_broker(given)
    if address is None:
        raise SerkitError("the demo needs a broker: give --broker mqtt://HOST:PORT or leave it out")
    return given, address, None


def _demo_source(args: argparse.Namespace, config: AgentConfig, rate: int) -> tuple[Any, list]:
    """The audio and, for the clips, each one's (name, start s, end s) in the stream."""
    from pathlib import Path

    from serkit.edge.sources import ArraySource, open_source

    if args.source != "clips":
        return open_source(args.source, rate, "realtime", config.rate, config.mic_chunk_s, config.watchdog_s), []
    clips = demo_clips(Path(args.clips or SAMPLES_DIR), rate)
    # One stream, the clips a second apart, as a microphone in a room would hear them.
    gap = np.zeros(rate, np.float32)
    spans, parts, t = [], [gap], 1.0
    for name, x in clips:
        spans.append((name, t, t + len(x) / rate))
        parts += [x, gap]
        t += (len(x) + len(gap)) / rate
    return ArraySource(np.concatenate(parts), rate, args.pace, f"{len(clips)} demo clips"), spans


class _DemoViewer:
    """A subscriber that prints every message the demo device publishes, as Home Assistant would see them."""

    def __init__(self, broker: str, address: Any, device: str) -> None:
        import paho.mqtt.client as mqtt

        from serkit.edge.mqtt_payloads import Topics

        self.address = address
        self.broker = broker
        self.topics = Topics("serkit", device, "homeassistant")
        self.received: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="serkit-demo-viewer")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(self.topics.device_filter, 1), (self.topics.discovery_filter, 1)]
        )
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message

    def __enter__(self) -> _DemoViewer:
        try:
            self.client.connect(self.address.host, self.address.port)
        except OSError as exc:
            raise SerkitError(f"cannot reach the broker {self.broker}: {exc}") from None
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.__exit__()
            raise SerkitError(f"the broker {self.broker} did not confirm the demo's subscription")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: Any, userdata: Any, m: Any) -> None:
        self.received.append((m.topic, m.payload))
        if m.topic != self.topics.raw:  # every window is on the page; the log shows what Home Assistant gets
            print(f"{m.topic}  {m.payload.decode(errors='replace')}", flush=True)

    def states(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in self.received if t == self.topics.emotion]


def _print_per_clip(states: list[dict[str, Any]], spans: list[tuple[str, float, float]]) -> None:
    print("== per clip (state published while the clip played)")
    for name, t0, t1 in spans:
        got = [
            s for s in states if t0 - 0.5 <= s["offset_s"] + s["window_s"] / 2 <= t1 + 0.5 and s["emotion"] != "silence"
        ]
        said = ", ".join(f"{s['emotion']} {100 * s['confidence']:.0f}%" for s in got) or "no confident state"
        print(f"  {name}: {said}")


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the shipped model on bundled clips (or the microphone), with the live page and MQTT messages",
        description=(
            "Runs the agent over the bundled sample clips in real time, serves the live page, and prints every MQTT "
            "message a subscriber sees (discovery, availability, emotion states). Uses --broker, or an embedded "
            f"broker it starts itself. Note: {SYNTHETIC_NOTE}."
        ),
    )
    p.add_argument("--broker", help="mqtt://HOST:PORT of a broker to use instead of the embedded one")
    p.add_argument("--model", help="a .tflite model (default: the shipped one)")
    p.add_argument("--clips", help="a folder of .wav clips instead of the bundled samples")
    p.add_argument(
        "--source",
        default="clips",
        help="clips (default), or mic / mic:NAME / mic:INDEX to listen to a microphone until Ctrl-C",
    )
    p.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="play the clips in real time (default) or at full speed",
    )
    p.add_argument(
        "--http",
        default="8765",
        help="[HOST:]PORT of the live page (default: 8765 on 127.0.0.1; 0 = any free port; empty = no page)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_wait_online(args: argparse.Namespace) -> int:
    from serkit.edge.online import wait_online

    topic = wait_online(build_config(args.config, {}), args.timeout_s)
    print(f"{topic}: online" if topic else "broker = none: no availability topic to wait for")
    return 0


def register_wait_online(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(  # no help=: deploy's internal check stays out of the top-level command list
        "wait-online",
        description=(
            "Connect with the agent's config (broker, credentials, TLS, device id) and wait for "
            "<topic_prefix>/<device_id>/availability to read online. Exit 0 when it does, 1 on timeout."
        ),
    )
    p.add_argument("--config", help="the agent's TOML config")
    p.add_argument("--timeout-s", type=positive_float, default=30.0, help="seconds to wait (default 30)")
    p.add_argument(
        "--timeout", type=positive_float, dest="timeout_s", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )  # installs before 0.4
    p.set_defaults(func=cmd_wait_online)


def cmd_features(args: argparse.Namespace) -> int:
    from pathlib import Path

    from serkit.edge.audio import read_wav
    from serkit.edge.features import mfcc

    config, source = _feature_config(args.config)
    # Said with the first result, so that a refused file is still the only line on stderr.
    note = f"features: {config.num_features} per frame ({source})"
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.wav:
        signal_, rate = read_wav(path, config.sample_rate)
        feats = mfcc(signal_, config)
        if note:
            print(note, file=sys.stderr)
            note = ""
        line = f"{path}: {len(signal_) / rate:.2f} s -> {feats.shape[0]} frames x {feats.shape[1]} features"
        if out_dir:
            target = out_dir / (Path(path).stem + ".npy")
            np.save(target, feats)
            line += f" -> {target}"
        print(line)
    return 0


def _feature_config(path: str | None) -> tuple[Any, str]:
    """(FeatureConfig, where it came from): a model spec or a bare FeatureConfig JSON, else the shipped model's."""
    from serkit.edge.features import FeatureConfig
    from serkit.edge.files import read_json_object
    from serkit.edge.spec import ModelSpec, spec_path_for
    from serkit.models import DEFAULT_MODEL

    if not path:
        name = os.path.basename(DEFAULT_MODEL)
        return ModelSpec.load(spec_path_for(DEFAULT_MODEL)).features, f"the shipped model, {name}"
    data = read_json_object(path, "feature config or model spec")
    # A model spec holds its features under "features"; a bare FeatureConfig is the object itself.
    return FeatureConfig.from_dict(data.get("features", data), where=f"{path}: features"), path


def register_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="compute the MFCC features the model sees for WAV files",
        description="Compute the numpy MFCCs (the edge/trainer contract) for WAV files; optionally save .npy.",
    )
    p.add_argument("wav", nargs="+", help="WAV file(s); any rate, resampled to the config's rate")
    p.add_argument(
        "--config", help="JSON FeatureConfig or a model spec (.json beside a .tflite); default: the shipped model's"
    )
    p.add_argument("--out", help="folder for one .npy per file (default: print shapes only)")
    p.set_defaults(func=cmd_features)
