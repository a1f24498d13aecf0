from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import assert_one_line_error, cli, pcm16, run_cli, speechlike, wav_bytes

from serkit.edge.audio import read_wav, wav_chunks, write_wav
from serkit.edge.errors import SerkitError
from serkit.edge.resample import resample, resample_poly

scipy_signal = pytest.importorskip("scipy.signal")


def _pcm(x: np.ndarray, bits: int) -> bytes:
    if bits == 8:
        return (np.round(x * 127) + 128).astype(np.uint8).tobytes()
    if bits == 16:
        return np.round(x * 32767).astype("<i2").tobytes()
    if bits == 24:
        v = np.round(x * (2**23 - 1)).astype(np.int32)
        return np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    return np.round(x * (2**31 - 1)).astype("<i4").tobytes()


@pytest.mark.parametrize("bits, tol", [(8, 2 / 128), (16, 1e-4), (24, 1e-6), (32, 1e-6)])
@pytest.mark.parametrize("extensible", [False, True])
def test_pcm_depths_read_back(tmp_path, bits, tol, extensible):
    x = 0.8 * np.sin(np.linspace(0, 60, 4000))
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(_pcm(x, bits), bits=bits, extensible=extensible))
    got, rate = read_wav(path)
    assert rate == 16000 and got.dtype == np.float32 and got.shape == x.shape
    assert np.abs(got - x).max() <= tol


@pytest.mark.parametrize("dtype, bits", [("<f4", 32), ("<f8", 64)])
def test_float_wavs(tmp_path, dtype, bits):
    x = 0.5 * np.cos(np.linspace(0, 30, 3000))
    path = tmp_path / "f.wav"
    path.write_bytes(wav_bytes(x.astype(dtype).tobytes(), bits=bits, tag=3))
    got, _ = read_wav(path)
    assert np.abs(got - x).max() <= 1e-7


def test_stereo_is_downmixed_and_extra_chunks_are_skipped(tmp_path):
    left, right = np.full(1000, 0.5), np.full(1000, -0.1)
    inter = np.stack([left, right], axis=1).ravel()
    chunks = ((b"FLLR", b"\x00" * 4043), (b"LIST", b"INFOISFT\x05\x00\x00\x00Lavf\x00"))  # odd sizes: padded
    path = tmp_path / "s.wav"
    path.write_bytes(wav_bytes(_pcm(inter, 16), channels=2, extra_chunks=chunks))
    got, _ = read_wav(path)
    assert got.shape == (1000,) and np.allclose(got, 0.2, atol=1e-4)


def test_reads_and_resamples_real_originals(shared_data):
    clips = sorted((shared_data / "ravdess-48k-sample").glob("*/*.wav"))
    if not clips:
        pytest.skip("no 48 kHz originals")
    for clip in clips:
        native, rate = read_wav(clip)
        assert rate == 48000 and native.ndim == 1 and len(native) > 48000
        at16, rate16 = read_wav(clip, 16000)
        assert rate16 == 16000 and len(at16) == -(-len(native) // 3)
        ref = scipy_signal.resample_poly(native.astype(np.float64), 1, 3)
        assert np.abs(at16 - ref).max() <= 1e-6


@pytest.mark.parametrize("src, dst", [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (16000, 11025)])
def test_resampler_matches_scipy_resample_poly(src, dst):
    x = speechlike(0.9, src, seed=3).astype(np.float64)
    from math import gcd

    g = gcd(src, dst)
    ref = scipy_signal.resample_poly(x, dst // g, src // g)
    got = resample_poly(x, dst // g, src // g)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-9
    assert resample(x, src, dst).dtype == np.float32


def test_resampler_removes_content_above_the_new_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 12000 * t)  # 12 kHz must not alias into 16 kHz output
    y = resample(x, rate, 16000)
    spec = np.abs(np.fft.rfft(y[2000:-2000] * np.hanning(len(y) - 4000)))
    freqs = np.fft.rfftfreq(len(y) - 4000, 1 / 16000)
    assert spec[np.argmin(np.abs(freqs - 1000))] > 1000 * spec[np.argmin(np.abs(freqs - 4000))]


def test_write_wav_round_trip(tmp_path):
    x = speechlike(0.5)
    write_wav(tmp_path / "w.wav", x, 16000)
    got, rate = read_wav(tmp_path / "w.wav")
    assert rate == 16000 and np.abs(got - x).max() < 1e-4


def _bad_files(tmp_path):
    good = _pcm(np.zeros(800), 16)
    nan = np.array([0.1, np.nan, 0.2] * 100, dtype="<f4").tobytes()
    cases = {
        "notwav.wav": (b"ID3\x03\x00" + b"\x00" * 200, "not a WAV file"),
        "truncated.wav": (wav_bytes(good, declared_data_size=len(good) * 4), "truncated"),
        "headeronly.wav": (wav_bytes(b"")[:30], "truncated: fmt chunk"),
        "riffonly.wav": (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        "empty.wav": (b"", "file is empty"),
        "nodata.wav": (wav_bytes(b""), "zero-length"),
        "alaw.wav": (wav_bytes(b"\xd5" * 800, bits=8, tag=6), "A-law is not supported"),
        "mulaw.wav": (wav_bytes(b"\xff" * 800, bits=8, tag=7), "mu-law is not supported"),
        "mp3.wav": (wav_bytes(b"\xff\xfb" * 400, bits=16, tag=0x55), "MP3 is not supported"),
        "adpcm.wav": (wav_bytes(b"\x00" * 800, bits=16, tag=2, extensible=True), "ADPCM is not supported"),
        "nan.wav": (wav_bytes(nan, bits=32, tag=3), "NaN/inf"),
        "12bit.wav": (wav_bytes(b"\x00" * 900, bits=12), "12-bit PCM is not supported"),
    }
    paths = {}
    for name, (payload, needle) in cases.items():
        (tmp_path / name).write_bytes(payload)
        paths[name] = (tmp_path / name, needle)
    return paths


def test_every_bad_file_is_a_clear_error_in_the_library(tmp_path):
    for name, (path, needle) in _bad_files(tmp_path).items():
        with pytest.raises(SerkitError) as err:
            read_wav(path)
        assert needle in str(err.value), name
        assert str(path) in str(err.value)


def test_every_bad_file_is_one_line_and_non_zero_exit_through_the_cli(tmp_path):
    for _name, (path, needle) in _bad_files(tmp_path).items():
        assert_one_line_error(cli("features", str(path)), str(path), needle)
    assert_one_line_error(cli("features", str(tmp_path)), str(tmp_path), "is a directory")
    assert_one_line_error(cli("features", str(tmp_path / "absent.wav")), "absent.wav", "no such file")


def test_cli_features_writes_npy(tmp_path):
    write_wav(tmp_path / "a.wav", speechlike(1.0), 16000)
    spec = tmp_path / "spec.json"
    spec.write_text(
        '{"features": '
        + __import__("json").dumps(
            {**__import__("serkit.edge.features", fromlist=["x"]).FeatureConfig(delta_order=1).to_dict()}
        )
        + "}"
    )
    proc = run_cli("features", str(tmp_path / "a.wav"), "--config", str(spec), "--out", str(tmp_path / "npy"))
    assert proc.returncode == 0, proc.stderr
    arr = np.load(tmp_path / "npy" / "a.npy")
    assert arr.shape == (99, 26)  # 1 + ceil((16000 - 400) / 160)
    bad = tmp_path / "bad.json"
    bad.write_text('{"features": {"numcep": 13}}')
    assert_one_line_error(run_cli("features", str(tmp_path / "a.wav"), "--config", str(bad)), "bad.json", "missing key")


def test_fmt_chunk_struct_sanity():
    # Guard the hand-built test files themselves: a 16-bit mono header has block align 2.
    blob = wav_bytes(b"\x00\x00" * 4)
    assert struct.unpack("<H", blob[32:34])[0] == 2


@pytest.mark.parametrize("rate, channels", [(16000, 1), (48000, 2), (44100, 1)])
def test_reading_in_chunks_gives_read_wavs_signal_bit_for_bit(tmp_path, rate, channels):
    """The file source and predict read a second at a time; a chunk that follows the audio is not read as audio."""
    x = speechlike(2.3, rate=rate, seed=rate)
    frames = np.repeat(x[:, None], channels, axis=1) * (0.5 if channels == 2 else 1.0)
    path = tmp_path / "a.wav"
    body = wav_bytes(pcm16(frames.ravel()), rate=rate, channels=channels)
    path.write_bytes(
        body[:4] + struct.pack("<I", len(body) - 8 + 20) + body[8:] + b"LIST" + struct.pack("<I", 12) + b"x" * 12
    )
    whole, _ = read_wav(path, 16000)
    info, chunks = wav_chunks(path, 16000, seconds=0.037)
    assert info.sample_rate == rate and info.channels == channels
    assert np.array_equal(np.concatenate(list(chunks)), whole)
