"""WAV input shared by the trainer and the edge file source.

A small RIFF parser rather than the `wave` module: Python 3.11's `wave` reads
neither IEEE float nor WAVE_FORMAT_EXTENSIBLE files, and corpora carry extra
chunks (RAVDESS originals have `FLLR`) that must simply be skipped.
"""

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import numpy as np

from serkit.edge.errors import SerkitError
from serkit.edge.resample import StreamResampler, resample

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    _ALAW: "A-law",
    _MULAW: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}


class WavInfo(NamedTuple):
    """A WAV file's format, from its header."""

    sample_rate: int
    channels: int
    bits: int
    encoding: str  # "pcm" or "float"
    frames: int


def _fail(path: str, problem: str) -> SerkitError:
    return SerkitError(f"{path}: {problem}")


def _parse_fmt(path: str, body: bytes) -> tuple[int, int, int, int, int]:
    if len(body) < 16:
        raise _fail(path, "fmt chunk is too short")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise _fail(path, "WAVE_FORMAT_EXTENSIBLE fmt chunk is too short")
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
    return tag, channels, rate, block_align, bits


_HEADER_LIMIT = 1 << 20  # bytes of chunks before "data" read in one go: a fmt chunk and the usual extras


def read_wav_info(path: str | os.PathLike[str]) -> tuple[WavInfo, bytes]:
    """Parse a WAV file; returns its format and the raw bytes of its data chunk."""
    info, offset, size = wav_layout(path)
    with open(path, "rb") as f:
        f.seek(offset)
        return info, f.read(size)


def wav_layout(path: str | os.PathLike[str]) -> tuple[WavInfo, int, int]:
    """(format, offset of the audio in the file, its length in bytes), read from the headers alone."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise _fail(p, "is a directory, expected a WAV file")
    if os.path.exists(p) and not os.path.isfile(p):  # a FIFO or a device would block or never end
        raise _fail(p, "is not a regular file (a FIFO, device or socket), expected a WAV file")
    try:
        with open(p, "rb") as f:
            total = os.fstat(f.fileno()).st_size
            head = f.read(12)
            fmt, offset, size = _walk_chunks(p, f, head, total)
    except FileNotFoundError:
        raise _fail(p, "no such file") from None
    except OSError as exc:
        raise _fail(p, f"cannot read ({exc.strerror or exc})") from None
    info = _check_format(p, fmt, size)
    return info, offset, info.frames * info.channels * info.bits // 8


def _walk_chunks(p: str, f: BinaryIO, head: bytes, total: int) -> tuple[tuple[int, int, int, int, int], int, int]:
    """The fmt chunk's fields and where the data chunk's bytes are, seeking past everything else."""
    if total == 0:
        raise _fail(p, "file is empty (0 bytes)")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        if head[:4] == b"RF64":
            raise _fail(p, "RF64 (over-4-GB WAV) is not supported; split the recording")
        raise _fail(p, "not a WAV file (no RIFF/WAVE header)")
    if head[:4] == b"RIFX":
        raise _fail(p, "big-endian WAV (RIFX) is not supported")
    fmt = None
    pos = 12
    while pos + 8 <= total:
        f.seek(pos)
        cid, size = f.read(4), struct.unpack("<I", f.read(4))[0]
        body_start = pos + 8
        if cid == b"fmt ":
            if body_start + size > total:
                left = total - body_start
                raise _fail(p, f"truncated: fmt chunk declares {size} bytes but only {left} are present")
            fmt = _parse_fmt(p, f.read(min(size, _HEADER_LIMIT)))
        elif cid == b"data":
            if fmt is None:
                raise _fail(p, "data chunk comes before the fmt chunk")
            available = total - body_start
            if size > available:
                raise _fail(p, f"truncated: data chunk declares {size} bytes but only {available} are present")
            return fmt, body_start, size
        pos = body_start + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise _fail(p, "no fmt chunk; the file is truncated or not a WAV")
    raise _fail(p, "no data chunk; the file is truncated")


def _check_format(p: str, fmt: tuple[int, int, int, int, int], size: int) -> WavInfo:
    tag, channels, rate, block_align, bits = fmt
    if tag not in (_PCM, _FLOAT):
        name = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")
        raise _fail(p, f"encoding {name} is not supported; convert to PCM, e.g. `sox in.wav -e signed -b 16 out.wav`")
    if channels < 1:
        raise _fail(p, "fmt chunk declares 0 channels")
    if rate < 1000 or rate > 768000:
        raise _fail(p, f"implausible sample rate {rate} Hz")
    valid = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}[tag]
    if bits not in valid:
        raise _fail(p, f"{bits}-bit {'PCM' if tag == _PCM else 'float'} is not supported")
    if block_align != channels * bits // 8:
        raise _fail(p, f"fmt chunk is inconsistent (block align {block_align} for {channels} x {bits}-bit)")
    frames = size // block_align
    if frames == 0:
        raise _fail(p, "contains no audio (zero-length data chunk)")
    return WavInfo(rate, channels, bits, "pcm" if tag == _PCM else "float", frames)


def pcm16_to_float(data: bytes | np.ndarray) -> np.ndarray:
    """Signed 16-bit little-endian PCM (bytes, or an int16 array) → float32 in [-1, 1)."""
    x = np.frombuffer(data, dtype="<i2") if isinstance(data, (bytes, bytearray, memoryview)) else data
    return x.astype(np.float32) / 32768.0


def decode(info: WavInfo, data: bytes) -> np.ndarray:
    """Raw data-chunk bytes → float32 (frames, channels) in [-1, 1] (float files unscaled)."""
    if info.encoding == "float":
        x = np.frombuffer(data, dtype="<f4" if info.bits == 32 else "<f8").astype(np.float32)
    elif info.bits == 8:
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif info.bits == 16:
        x = pcm16_to_float(data)
    elif info.bits == 24:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(data, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    return x.reshape(-1, info.channels)


def read_wav(path: str | os.PathLike[str], sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV as mono float32; resampled to sample_rate when given.

    Returns (signal, rate). Raises SerkitError naming the file for anything it cannot use.
    """
    info, data = read_wav_info(path)
    x = decode(info, data)
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise _fail(path, f"contains {bad} NaN/inf sample(s)")
    mono = x.mean(axis=1, dtype=np.float32) if info.channels > 1 else x[:, 0]
    if sample_rate is not None and sample_rate != info.sample_rate:
        return resample(mono, info.sample_rate, sample_rate), sample_rate
    return np.ascontiguousarray(mono), info.sample_rate


def wav_chunks(
    path: str | os.PathLike[str], sample_rate: int, seconds: float = 1.0
) -> tuple[WavInfo, Iterator[np.ndarray]]:
    """The format now (a bad file fails here), then mono float32 chunks at sample_rate as the file is read:
    memory stays the same for any length, and the concatenated chunks are read_wav's signal (bit for bit
    at the file's own rate; to within 1e-6 when resampled, the same sums in other block sizes)."""
    info, offset, size = wav_layout(path)
    return info, _chunks(path, info, offset, size, sample_rate, seconds)


def _chunks(
    path: str | os.PathLike[str], info: WavInfo, offset: int, size: int, sample_rate: int, seconds: float
) -> Iterator[np.ndarray]:
    block = info.channels * info.bits // 8
    step = max(1, round(seconds * info.sample_rate)) * block
    resampler = StreamResampler(info.sample_rate, sample_rate)
    with open(path, "rb") as f:
        f.seek(offset)
        for done in range(0, size, step):
            x = decode(info, f.read(min(step, size - done)))  # not past the data chunk: other chunks may follow
            if not np.isfinite(x).all():
                raise _fail(path, f"contains {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf sample(s)")
            mono = x.mean(axis=1, dtype=np.float32) if info.channels > 1 else x[:, 0]
            out = resampler.push(mono)
            if out.size:
                yield out
    tail = resampler.flush()
    if tail.size:
        yield tail


def write_wav(path: str | os.PathLike[str], signal: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM (clipped to [-1, 1])."""
    pcm = (np.clip(np.asarray(signal, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2")
    payload = pcm.tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, _PCM, 1, sample_rate, sample_rate * 2, 2, 16)
    with open(path, "wb") as f:
        f.write(header + fmt + b"data" + struct.pack("<I", len(payload)) + payload)
