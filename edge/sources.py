"""Audio sources: each yields float32 mono chunks at the model's sample rate until it ends or `stop` is set.

mic, mic:NAME, mic:INDEX    a PyAudio input device (the [mic] extra)
file:PATH                   a WAV file, paced in real time unless pace="fast"
-                           raw signed 16-bit little-endian mono PCM on stdin at `rate`
"""

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from serkit.edge.audio import pcm16_to_float, wav_chunks
from serkit.edge.errors import MissingExtraError, SerkitError
from serkit.edge.quiet import quiet_stderr
from serkit.edge.resample import StreamResampler

log = logging.getLogger("serkit")

CANDIDATE_RATES = (16000, 48000, 44100, 32000, 22050, 8000)
STOP_POLL_S = 0.2  # how often a source blocked on input looks at the stop flag


class SourceSpec(NamedTuple):
    """Which audio source to open: its kind and its argument."""

    kind: str  # "mic", "file" or "stdin"
    arg: str = ""  # device name/index, or file path


def parse_source(text: str) -> SourceSpec:
    if text == "-":
        return SourceSpec("stdin")
    if text == "mic":
        return SourceSpec("mic")
    kind, sep, arg = text.partition(":")
    if sep and kind in ("mic", "file") and arg:
        return SourceSpec(kind, arg)
    raise SerkitError(f"'source' must be mic, mic:NAME, mic:INDEX, file:PATH or -, got {text!r}")


# -- file ---------------------------------------------------------------------------------------------
class ArraySource:
    """Audio already in memory, fed in chunks; paced like a microphone unless pace="fast"."""

    def __init__(
        self, signal: np.ndarray, rate: int, pace: str = "realtime", name: str = "audio", chunk_s: float = 0.1
    ) -> None:
        self.signal = signal
        self.rate = rate
        self.pace = pace
        self.name = name
        self.chunk = max(1, round(chunk_s * rate))

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.rate

    def describe(self) -> str:
        return f"{self.name} ({self.seconds:.1f} s, pace {self.pace})"

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        pieces = (self.signal[start : start + self.chunk] for start in range(0, len(self.signal), self.chunk))
        return paced(pieces, self.rate, self.pace, stop)


def paced(pieces: Iterable[np.ndarray], rate: int, pace: str, stop: threading.Event) -> Iterator[np.ndarray]:
    """The pieces as they come (pace "fast"), or each when a microphone would have delivered it ("realtime");
    until `stop` is set."""
    t0, sent = time.monotonic(), 0
    for piece in pieces:
        if stop.is_set():
            return
        if pace == "realtime":
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0 and stop.wait(ahead):
                return
        sent += len(piece)
        yield piece


class FileSource:
    """A WAV file, read a second at a time (the same memory for any length), paced like a microphone
    unless pace="fast". Its headers are read at once, so a bad file fails before anything starts."""

    def __init__(self, path: str, rate: int, pace: str = "realtime", chunk_s: float = 0.1) -> None:
        info, self._blocks = wav_chunks(path, rate)
        self.path = path
        self.rate = rate
        self.pace = pace
        self.seconds = info.frames / info.sample_rate
        self.chunk = max(1, round(chunk_s * rate))

    def describe(self) -> str:
        return f"file {self.path} ({self.seconds:.1f} s, pace {self.pace})"

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        if self.pace == "fast":  # the blocks as read: the same results (streaming is chunk-invariant), less overhead
            return paced(self._blocks, self.rate, self.pace, stop)
        pieces = (block[s : s + self.chunk] for block in self._blocks for s in range(0, len(block), self.chunk))
        return paced(pieces, self.rate, self.pace, stop)


# -- stdin --------------------------------------------------------------------------------------------
class PcmStreamSource:
    """Raw S16_LE mono PCM from a byte stream (stdin): `arecord -f S16_LE -r 16000 -c 1 | serkit run --source -`."""

    def __init__(self, stream: BinaryIO, in_rate: int, rate: int, chunk_s: float = 0.1) -> None:
        self.stream = stream
        self.in_rate = in_rate
        self.resampler = StreamResampler(in_rate, rate)
        self.chunk_bytes = 2 * max(1, round(chunk_s * in_rate))

    def describe(self) -> str:
        return f"raw S16_LE PCM on stdin at {self.in_rate} Hz"

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        odd, received = b"", 0
        while (data := self._read(stop)) is not None:
            received += len(data)
            data = odd + data
            cut = len(data) - len(data) % 2
            data, odd = data[:cut], data[cut:]
            if data:
                out = self.resampler.push(pcm16_to_float(data))
                if out.size:
                    yield out
        if stop.is_set():
            return
        tail = self.resampler.flush()
        if tail.size:
            yield tail
        if not received:
            raise SerkitError("stdin: no audio arrived (expected raw S16_LE mono PCM)")
        if odd:
            raise SerkitError(
                f"stdin: the stream ended with an odd byte after {received - 1} bytes (half a 16-bit sample): "
                "not S16_LE PCM, or cut short"
            )

    def _read(self, stop: threading.Event) -> bytes | None:
        """The bytes that have arrived (up to a chunk), or None at the end or once `stop` is set.

        A descriptor is polled, so a signal stops the agent within STOP_POLL_S even when no data comes.
        """
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream: it never waits
            data = getattr(self.stream, "read1", self.stream.read)(self.chunk_bytes)
            return data or None
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], STOP_POLL_S)
            if ready:
                return os.read(fd, self.chunk_bytes) or None
        return None


# -- microphone ---------------------------------------------------------------------------------------
def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise MissingExtraError(
            "the microphone needs the 'mic' extra (pyaudio not installed): pip install 'serkit[mic]' "
            "(on Debian/Raspberry Pi OS first: sudo apt install portaudio19-dev)"
        ) from None
    return pyaudio


def open_pyaudio() -> Any:
    pyaudio = _pyaudio()
    with quiet_stderr():
        return pyaudio.PyAudio()


def supported_rates(pa: Any, index: int, channels: int = 1) -> list[int]:
    pyaudio = _pyaudio()
    rates = []
    for rate in CANDIDATE_RATES:
        try:
            with quiet_stderr():
                ok = pa.is_format_supported(
                    rate, input_device=index, input_channels=channels, input_format=pyaudio.paInt16
                )
        except ValueError:
            ok = False
        if ok:
            rates.append(rate)
    return rates


def input_devices(pa: Any) -> list[dict[str, Any]]:
    """Every device with input channels: index, name, channels, default and supported rates."""
    out = []
    with quiet_stderr():
        infos = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    for info in infos:
        if int(info.get("maxInputChannels", 0)) < 1:
            continue
        index = int(info["index"])
        out.append(
            {
                "index": index,
                "name": str(info["name"]),
                "channels": int(info["maxInputChannels"]),
                "default_rate": int(info["defaultSampleRate"]),
                "rates": supported_rates(pa, index),
            }
        )
    return out


def find_device(pa: Any, wanted: str) -> dict[str, Any]:
    """By index (all digits) or by case-insensitive name substring; '' is the system default input."""
    devices = input_devices(pa)
    if not devices:
        raise SerkitError("no audio input devices found (is the microphone plugged in? see: serkit devices)")
    if not wanted:
        try:
            with quiet_stderr():
                default = int(pa.get_default_input_device_info()["index"])
        except (OSError, IOError):
            default = devices[0]["index"]
        return next((d for d in devices if d["index"] == default), devices[0])
    if wanted.isdigit():
        match = [d for d in devices if d["index"] == int(wanted)]
    else:
        match = [d for d in devices if wanted.lower() in d["name"].lower()]
    if not match:
        names = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
        raise SerkitError(f"'source': no input device matches {wanted!r} (inputs: {names})")
    return match[0]


class MicSource:
    """A PyAudio input: 16 kHz when the device offers it, else its native rate resampled in numpy.

    A watchdog warns when the device delivers only zeros (muted, or a dead USB mic) and
    a device that disappears is looked up again by name and reopened.
    """

    def __init__(
        self, wanted: str, rate: int, chunk_s: float = 0.1, watchdog_s: float = 10.0, pyaudio_factory: Any = None
    ) -> None:
        self.wanted = wanted
        self.rate = rate
        self.chunk_s = chunk_s
        self.watchdog_s = watchdog_s
        self._new_pyaudio = pyaudio_factory or open_pyaudio  # PortAudio only sees replugged devices after a re-init
        self.pa = self._new_pyaudio()
        self.device = find_device(self.pa, wanted)  # fails now, before the agent starts, if absent
        self.status = "ok"

    def describe(self) -> str:
        return f"microphone {self.device['index']}: {self.device['name']}"

    def _open(self) -> tuple[Any, int]:
        pyaudio = _pyaudio()
        rates = self.device["rates"] or [self.device["default_rate"]]
        in_rate = self.rate if self.rate in rates else rates[0]
        stream = self.pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=in_rate,
            input=True,
            input_device_index=self.device["index"],
            frames_per_buffer=max(1, round(self.chunk_s * in_rate)),
        )
        return stream, in_rate

    def chunks(self, stop: threading.Event) -> Iterator[np.ndarray]:
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    stream, in_rate = self._open()
                except (OSError, ValueError) as exc:
                    self.status = "lost"
                    log.warning("cannot open %s (%s); retrying in %.0f s", self.describe(), exc, backoff)
                    if stop.wait(backoff):
                        return
                    backoff = min(30.0, backoff * 2)
                    self._relocate()
                    continue
                log.info("capturing from %s at %d Hz", self.describe(), in_rate)
                backoff = 1.0
                yield from self._read(stream, in_rate, stop)
                with contextlib.suppress(OSError):
                    stream.close()
        finally:
            self.pa.terminate()

    def _read(self, stream: Any, in_rate: int, stop: threading.Event) -> Iterator[np.ndarray]:
        resampler = StreamResampler(in_rate, self.rate)
        frames = max(1, round(self.chunk_s * in_rate))
        zero_since: float | None = None
        while not stop.is_set():
            try:
                data = stream.read(frames, exception_on_overflow=False)
            except OSError as exc:
                self.status = "lost"
                log.warning("%s stopped delivering audio (%s); reopening", self.describe(), exc)
                return
            x = np.frombuffer(data, "<i2")
            if self.watchdog_s > 0:
                now = time.monotonic()
                if x.any():
                    if self.status == "silent":
                        log.warning("%s delivers audio again", self.describe())
                    zero_since, self.status = None, "ok"
                else:
                    zero_since = zero_since or now
                    if self.status != "silent" and now - zero_since >= self.watchdog_s:
                        self.status = "silent"
                        log.warning(
                            "%s has delivered only zeros for %.0f s: muted, or a dead microphone?",
                            self.describe(),
                            now - zero_since,
                        )
            out = resampler.push(pcm16_to_float(x))
            if out.size:
                yield out

    def _relocate(self) -> None:
        """A USB microphone that comes back may have a new index: find it again by name."""
        try:
            self.pa.terminate()
            self.pa = self._new_pyaudio()
            self.device = find_device(self.pa, self.wanted or self.device["name"])
        except SerkitError as exc:
            log.warning("%s", exc)


def open_source(text: str, rate: int, pace: str, stdin_rate: int, mic_chunk_s: float, watchdog_s: float) -> Any:
    spec = parse_source(text)
    if spec.kind == "file":
        if not os.path.exists(spec.arg):
            raise SerkitError(f"'source': {spec.arg}: no such file")
        return FileSource(spec.arg, rate, pace)
    if spec.kind == "stdin":
        return PcmStreamSource(sys.stdin.buffer, stdin_rate, rate)
    return MicSource(spec.arg, rate, mic_chunk_s, watchdog_s)
