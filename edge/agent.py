"""The agent loop: source → StreamClassifier → Decider → publisher, plus stats.

Everything is built and checked (model, spec, source, broker settings) before the
first sample is read, so a bad setting fails in one line instead of mid-stream.
"""

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from serkit.edge.config import AgentConfig, parse_http
from serkit.edge.decision import Decider, DecisionSettings
from serkit.edge.errors import SerkitError
from serkit.edge.mqtt_payloads import Topics, discovery_messages, iso_now, raw_payload, state_payload
from serkit.edge.publisher import MqttPublisher, StdoutPublisher, parse_broker
from serkit.edge.runtime import TFLiteModel
from serkit.edge.spec import ModelSpec, spec_path_for
from serkit.edge.stream import GateSettings, StreamClassifier

if TYPE_CHECKING:
    from serkit.edge.dashboard import Dashboard, LiveFeed

log = logging.getLogger("serkit")


NO_BROKER = "none (states on stdout)"


def broker_name(broker: str) -> str:
    """The broker as logs and the page name it: its address, or NO_BROKER."""
    return NO_BROKER if broker == "none" else broker


def default_model_path() -> str:
    from serkit.models import DEFAULT_MODEL

    return DEFAULT_MODEL


def load_model(path: str, threads: int) -> TFLiteModel:
    """The model and the spec beside it, refused with one line if the agent cannot use them."""
    p = path or default_model_path()
    if os.path.isdir(p):
        raise SerkitError(f"'model': {p} is a folder; give the .tflite file")
    if os.path.splitext(p)[1] != ".tflite":
        raise SerkitError(f"'model': {p} is not a .tflite model (convert a training run with serkit convert)")
    if not os.path.exists(p):
        raise SerkitError(f"'model': {p}: no such file")
    spec_file = spec_path_for(p)
    if not os.path.exists(spec_file):
        name = os.path.basename(spec_file)
        raise SerkitError(f"'model': {p} has no spec beside it ({name}); serkit convert writes both")
    spec = ModelSpec.load(spec_file)
    if spec.input_quant is None:
        raise SerkitError(f"{spec_file}: not the spec of a converted .tflite model (no input quantization)")
    return TFLiteModel(p, spec, threads=threads)


class Counters:
    """What the agent has seen so far: windows, those with speech, states decided."""

    __slots__ = ("windows", "speech_windows", "states")

    def __init__(self) -> None:
        self.windows = self.speech_windows = self.states = 0


class Delivery(NamedTuple):
    """How a run's states fared: produced, delivered, dropped by the queue bound, left undelivered at exit."""

    produced: int
    delivered: int
    dropped: int
    undelivered: int

    @property
    def lost(self) -> int:
        return self.dropped + self.undelivered

    def describe(self) -> str:
        return f"{self.lost} of {self.produced} states were not delivered ({self.dropped} dropped by the queue bound)"


class Agent:
    def __init__(
        self, config: AgentConfig, model: TFLiteModel, source: Any, publisher: Any, feed: "LiveFeed | None" = None
    ) -> None:
        self.config = config
        self.feed = feed  # the live page's, when it is served
        self.broker = broker_name(publisher.status()["broker"])
        self.model = model
        self.spec = model.spec
        self.source = source
        self.publisher = publisher
        self.device = config.effective_device_id()
        hop = self.spec.features.frames(config.hop_s) if config.hop_s else self.spec.hop_frames
        gate = GateSettings(
            enabled=config.gate,
            floor_dbfs=config.gate_dbfs,
            snr_db=config.gate_snr_db,
            active_fraction=config.gate_active,
        )
        self.classifier = StreamClassifier(model, self.spec, hop, gate)
        threshold = self.spec.threshold if config.min_confidence < 0 else config.min_confidence
        self.decider = Decider(
            self.spec.labels,
            DecisionSettings(
                smoothing=config.smoothing,
                min_confidence=threshold,
                hysteresis=config.hysteresis,
                hold=config.hold,
                on_silence=config.on_silence,
                silence_after_s=config.silence_after_s,
                state_interval_s=config.state_interval_s,
            ),
        )
        self.counters = Counters()
        # A file read at full speed outruns any broker: it waits for room in the queue rather than drop
        # states (while connected). A live source cannot wait: the oldest states go, counted.
        self._backpressure = getattr(source, "pace", "") == "fast"
        self.audio_s = 0.0
        self._started = time.monotonic()

    def run(self, stop: threading.Event, abort: threading.Event | None = None) -> Delivery:
        """Until the source ends or `stop` is set; then the queue is given flush_timeout_s to drain, or
        until `abort` is set."""
        self.publisher.start()
        log.info("%s", self.start_line())
        done = threading.Event()
        ticker = None
        if self.config.stats_interval_s:
            # On its own timer: a stalled source (a pipe with no data, a hung mic) is exactly when stats matter.
            def tick() -> None:
                while not done.wait(self.config.stats_interval_s):
                    self.publisher.stats(self.stats())

            ticker = threading.Thread(target=tick, name="serkit-stats", daemon=True)
            ticker.start()
        rate = self.spec.features.sample_rate
        try:
            for chunk in self.source.chunks(stop):
                self.audio_s += len(chunk) / rate
                for w in self.classifier.push(chunk):
                    self._handle(w)
            for w in self.classifier.flush():
                self._handle(w)
        finally:
            done.set()
            if ticker:
                ticker.join()
        undelivered = self.publisher.drain(self.config.flush_timeout_s, abort)
        if self.config.stats_interval_s:  # the final figures, after the queue has had its chance
            self.publisher.stats(self.stats())
        self.publisher.close(0)
        return Delivery(self.counters.states, self.publisher.delivered, self.publisher.dropped, undelivered)

    def _handle(self, w: Any) -> None:
        self.counters.windows += 1
        self.counters.speech_windows += int(w.speech)
        now = iso_now()
        if self.config.raw or self.feed:
            probs = None
            if w.probabilities is not None:
                probs = {lab: float(w.probabilities[i]) for i, lab in enumerate(self.spec.labels)}
            raw = raw_payload(w.seq, w.start_s, w.speech, w.level_dbfs, probs, self.device, now)
            if self.config.raw:
                self.publisher.raw(raw)
            if self.feed:
                self.feed.window({**raw, "floor_dbfs": w.floor_dbfs, "threshold_dbfs": w.threshold_dbfs})
        state = self.decider.update(w)
        if state is not None:
            self.counters.states += 1
            payload = state_payload(state, self.device, self.spec.window_s, now)
            self.publisher.state(payload, wait_for_room=self._backpressure)
            if self.feed:
                self.feed.state(payload)
            if state.changed:
                line = f"{self.device}: {state.emotion} {100 * state.confidence:.0f}%"
                log.info("%s", line)
                if self.config.quiet and self.broker != NO_BROKER:
                    print(line, flush=True)  # --quiet: the state changes alone, on stdout

    def start_line(self) -> str:
        discovery = (
            "no discovery" if self.broker == NO_BROKER else f"discovery {'on' if self.config.discovery else 'off'}"
        )
        return (
            f"listening: model {self.model.name} ({self.model.backend}), source {self.source.describe()} at "
            f"{self.spec.features.sample_rate} Hz, broker {self.broker}, device {self.device}, {discovery}"
        )

    def check_length(self, seconds: float) -> None:
        """Refuse audio too short to mean anything: less than one hop."""
        hop_s = self.classifier.hop * self.spec.features.winstep
        if seconds < hop_s:
            raise SerkitError(
                f"{self.source.describe()}: only {seconds:.3f} s of audio, too short to classify (at least {hop_s:g} s)"
            )

    def check_ending(self) -> None:
        """After a source that ended by itself: its length, and why there was no state when there was none."""
        self.check_length(self.audio_s)
        if self.counters.states == 0:
            c = self.counters
            why = (
                "none passed the speech gate (too quiet, or --gate-dbfs too high)"
                if not c.speech_windows
                else f"none reached the confidence a state needs ({self.decider.s.min_confidence:.2f})"
            )
            log.warning(
                "the audio ended with no state: %d windows, %d with speech; %s", c.windows, c.speech_windows, why
            )

    def live_tick(self) -> None:
        """The live page's periodic update: stats and the broker connection (from the page's own timer)."""
        if self.feed:
            self.feed.stats(self.stats())
            self.feed.connection(self.publisher.status())

    def stats(self) -> dict[str, Any]:
        uptime = time.monotonic() - self._started
        n = max(1, self.counters.windows)
        speech = max(1, self.counters.speech_windows)
        return {
            "uptime_s": round(uptime, 1),
            "audio_s": round(self.audio_s, 1),
            "windows": self.counters.windows,
            "windows_per_s": round(self.counters.windows / max(uptime, 1e-9), 3),
            "speech_windows": self.counters.speech_windows,
            "states": self.counters.states,
            "produced": self.counters.states,
            "feature_ms": round(self.classifier.feature_ms / n, 3),
            "inference_ms": round(self.classifier.inference_ms / speech, 3),
            "queue_depth": self.publisher.queue_depth,
            "delivered": self.publisher.delivered,
            "dropped": self.publisher.dropped,
            "audio": getattr(self.source, "status", "ok"),
            "peak_rss_mb": peak_rss_mb(),
            "timestamp": iso_now(),
            "device": self.device,
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM where /proc has it (ru_maxrss also counts the memory of
    the process that forked us, before exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def make_dashboard(config: AgentConfig, model: TFLiteModel) -> "Dashboard | None":
    """The live page's server, listening already (a port in use fails here, before any audio), or None."""
    address = parse_http(config.http)
    if address is None:
        return None
    from serkit.edge.dashboard import Dashboard, LiveFeed  # http.server only when the page is served

    spec = model.spec
    broker = parse_broker(config.broker)
    info = {
        "device": config.effective_device_id(),
        "model": model.name,
        "backend": model.backend,
        "labels": list(spec.labels),
        "window_s": round(spec.window_s, 3),
        "raw": config.raw,
        "gate": {"enabled": config.gate, "floor_dbfs": config.gate_dbfs, "snr_db": config.gate_snr_db},
        "broker": broker_name(str(broker) if broker else "none"),
    }
    return Dashboard(address, LiveFeed(info), config.masked(), config.http_token)


def make_publisher(config: AgentConfig, spec: ModelSpec, model_name: str) -> Any:
    address = parse_broker(config.broker)
    if address is None:
        return StdoutPublisher()
    device = config.effective_device_id()
    topics = Topics(config.topic_prefix, device, config.discovery_prefix)
    discovery = discovery_messages(topics, spec.labels, model_name) if config.discovery else None
    return MqttPublisher(
        address,
        topics,
        client_id=f"serkit-{device}",
        discovery=discovery,
        queue_size=config.queue_size,
        credentials=config.credentials(),
        keepalive=config.keepalive_s,
    )
