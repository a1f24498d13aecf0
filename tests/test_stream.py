"""Streaming == offline, the voice gate, smoothing/hysteresis, the stream resampler: with the shipped int8 model."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import ROOT, pcm16, run_cli, speechlike
from hypothesis import given
from hypothesis import strategies as st

from serkit.edge.agent import load_model
from serkit.edge.audio import read_wav, write_wav
from serkit.edge.decision import Decider, DecisionSettings
from serkit.edge.features import mfcc
from serkit.edge.resample import StreamResampler, rational_ratio, resample_poly
from serkit.edge.sources import PcmStreamSource
from serkit.edge.stream import GateSettings, StreamClassifier, WindowResult
from serkit.edge.windows import clip_windows, window_starts

SAMPLES = ROOT / "edge" / "samples"
NO_GATE = GateSettings(enabled=False)


@pytest.fixture(scope="module")
def model():
    return load_model("", 1)


def offline(model, signal: np.ndarray, hop: int) -> np.ndarray:
    spec = model.spec
    return model.predict(clip_windows(spec.normalise(mfcc(signal, spec.features)), spec.frames_per_window, hop))


def stream(model, signal: np.ndarray, hop: int, chunks: list[int], gate: GateSettings = NO_GATE) -> list[WindowResult]:
    clf = StreamClassifier(model, model.spec, hop, gate)
    out, i = [], 0
    for n in chunks:
        out += clf.push(signal[i : i + n])
        i += n
    out += clf.push(signal[i:])
    return out + clf.flush()


@pytest.mark.parametrize("chunk", [1, 160, 1000, 4096, "random"])
def test_streaming_gives_offline_probabilities_window_by_window(model, chunk):
    signal = read_wav(SAMPLES / "03-sad-espeak.wav", 16000)[0]
    hop = model.spec.hop_frames
    ref = offline(model, signal, hop)
    rng = np.random.default_rng(0)
    size = len(signal) // 7 if chunk == 1 else len(signal)  # chunk=1 on a part: a sample at a time is slow in Python
    sig = signal[:size] if chunk == 1 else signal
    sizes = list(rng.integers(1, 5000, 200)) if chunk == "random" else [chunk] * (len(sig) // chunk + 1)
    got = stream(model, sig, hop, sizes)
    want = ref if chunk != 1 else offline(model, sig, hop)
    assert len(got) == len(want) > 0
    assert [w.seq for w in got] == list(range(len(want)))
    diff = np.abs(np.stack([w.probabilities for w in got]) - want).max()
    assert diff <= 1e-6


@given(st.integers(1, 2000), st.integers(1, 400), st.integers(1, 300))
def test_window_starts_cover_every_frame_with_full_windows_on_the_hop_grid(n, T, hop):
    starts = window_starts(n, T, hop)
    if n <= T:
        assert starts == [0]
        return
    assert starts == sorted(set(starts))
    assert starts[0] == 0 and starts[-1] == n - T  # the last window ends on the last frame
    assert all(s + T <= n for s in starts)
    grid = list(range(0, n - T + 1, hop))
    assert starts[: len(grid)] == grid
    assert len(starts) - len(grid) == (1 if (n - T) % hop else 0)


def test_window_starts_close_on_the_last_frame_only_when_the_hop_grid_stops_short():
    assert window_starts(399, 299, 50) == [0, 50, 100]  # 100 + 299 = 399: the grid ends on the last frame
    assert window_starts(400, 299, 50) == [0, 50, 100, 101]  # frame 399 is in no grid window
    assert window_starts(390, 299, 50) == [0, 50, 91]
    assert window_starts(299, 299, 50) == [0]


@pytest.mark.parametrize("extra_frames", [0, 1, 37, 49, 50])
def test_the_closing_window_streams_like_offline(model, extra_frames):
    """Clips ending on the hop grid and past it, so the stream's closing window is checked both ways."""
    spec, hop = model.spec, model.spec.hop_frames
    step = spec.features.frame_step
    x = speechlike(0.01 * (spec.frames_per_window + 2 * hop + extra_frames) + 0.015)
    n = len(mfcc(x, spec.features))
    assert ((n - spec.frames_per_window) % hop == 0) == (extra_frames % hop == 0)
    want = offline(model, x, hop)
    assert len(want) == len(window_starts(n, spec.frames_per_window, hop))
    for chunks in ([step * 7] * 1000, [4096] * 100):
        got = stream(model, x, hop, chunks)
        assert [round(w.start_s / spec.features.winstep) for w in got] == window_starts(n, spec.frames_per_window, hop)
        assert np.abs(np.stack([w.probabilities for w in got]) - want).max() <= 1e-6


def test_a_clip_shorter_than_a_window_gets_one_padded_window_like_offline(model):
    x = speechlike(1.2)
    got = stream(model, x, model.spec.hop_frames, [777] * 30)
    assert len(got) == 1
    assert np.abs(got[0].probabilities - offline(model, x, model.spec.hop_frames)[0]).max() <= 1e-6


def test_other_hops_also_match_offline(model):
    x = read_wav(SAMPLES / "01-angry-espeak.wav", 16000)[0]
    for hop in (10, 37):
        got = stream(model, x, hop, [1600] * 100)
        assert np.abs(np.stack([w.probabilities for w in got]) - offline(model, x, hop)).max() <= 1e-6


def test_gate_rejects_silence_and_steady_noise_and_passes_speech(model):
    rng = np.random.default_rng(1)
    rate = 16000
    speech = read_wav(SAMPLES / "04-neutral-espeak.wav", rate)[0]
    silence = np.zeros(rate * 5, np.float32)
    hum = (0.02 * np.sin(2 * np.pi * 120 * np.arange(rate * 12) / rate) + 0.01 * rng.standard_normal(rate * 12)).astype(
        np.float32
    )
    gate = GateSettings()
    for name, sig in (("silence", silence), ("steady noise", hum)):
        res = stream(model, sig, model.spec.hop_frames, [1600] * 200, gate)
        assert res and not any(w.speech for w in res), name
        assert all(w.probabilities is None for w in res)  # nothing classified, nothing to publish
    # Speech over the same steady noise, after the floor has settled: speech windows come back.
    mixed = np.concatenate([hum, hum[: len(speech)] + speech])
    res = stream(model, mixed, model.spec.hop_frames, [1600] * 400, gate)
    speech_windows = [w for w in res if w.speech]
    assert speech_windows and all(w.start_s > 12 - model.spec.window_s for w in speech_windows)


def _window(seq: int, probs: list[float] | None) -> WindowResult:
    p = None if probs is None else np.array(probs, np.float32)
    return WindowResult(seq, seq * 0.5, seq * 0.5 + 3, p is not None, -20.0, p)


def test_hysteresis_keeps_the_state_from_flapping():
    labels = ("neutral", "happy", "angry")
    d = Decider(labels, DecisionSettings(smoothing=1.0, hysteresis=0.1, hold=3, state_interval_s=0))
    seq = [[0.1, 0.2, 0.7]] + [[0.1, 0.5, 0.4], [0.1, 0.4, 0.5]] * 5  # happy and angry trade places every window
    states = [d.update(_window(i, p)) for i, p in enumerate(seq)]
    assert {s.emotion for s in states} == {"angry"}  # never flips to happy
    assert [s.changed for s in states].count(True) == 1
    # A clear, lasting lead does switch, after `hold` windows.
    more = [d.update(_window(20 + i, [0.1, 0.8, 0.1])) for i in range(4)]
    assert [s.emotion for s in more] == ["angry", "angry", "happy", "happy"]
    assert more[2].changed


def test_min_confidence_publishes_nothing_uncertain_and_silence_is_optional():
    labels = ("neutral", "happy", "angry")
    d = Decider(labels, DecisionSettings(smoothing=1.0, min_confidence=0.6, state_interval_s=0))
    assert d.update(_window(0, [0.4, 0.3, 0.3])) is None
    assert d.update(_window(1, [0.1, 0.1, 0.8])).emotion == "angry"
    assert d.update(_window(2, None)) is None  # on_silence = nothing
    d = Decider(labels, DecisionSettings(on_silence="silence", state_interval_s=5, silence_after_s=0.5))
    assert d.update(_window(0, [0.1, 0.1, 0.8])).emotion == "angry"
    assert d.update(_window(1, None)) is None  # a pause between phrases: the state holds
    assert d.update(_window(2, [0.1, 0.1, 0.8])) is None  # speech again: no flap back and forth
    assert d.update(_window(3, None)) is None
    s = d.update(_window(4, None))  # quiet for silence_after_s: now it is silence
    assert s.emotion == "silence" and s.changed and s.probabilities == {}
    assert d.update(_window(5, None)) is None  # silence is said once, not every window


def test_smoothing_averages_windows():
    d = Decider(("a", "b"), DecisionSettings(smoothing=0.5, hold=1, hysteresis=0, state_interval_s=0))
    d.update(_window(0, [1.0, 0.0]))
    s = d.update(_window(1, [0.0, 1.0]))
    assert s.probabilities == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stream_resampler_equals_one_shot_for_any_chunking(rate):
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate // 2 + 123)
    r = StreamResampler(rate, 16000)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2000))
        parts.append(r.push(x[i : i + n]))
        i += n
    parts.append(r.flush())
    ref = resample_poly(x, *rational_ratio(rate, 16000)).astype(np.float32)
    assert np.abs(np.concatenate(parts) - ref).max() <= 1e-6  # the same sums, in blocks of another size


def test_stdin_pcm_at_48k_equals_the_wav_file_path(tmp_path, model):
    x16 = read_wav(SAMPLES / "05-fearful-espeak.wav", 16000)[0]
    x48 = resample_poly(x16, 3, 1).astype(np.float32)
    write_wav(tmp_path / "a48.wav", x48, 48000)
    pcm = (np.clip(x48.astype(np.float64), -1, 1) * 32767).round().astype("<i2").tobytes()  # as write_wav stores them

    import io

    src = PcmStreamSource(io.BufferedReader(io.BytesIO(pcm)), 48000, 16000, chunk_s=0.037)
    via_stdin = np.concatenate(list(src.chunks(threading.Event())))
    via_file = read_wav(tmp_path / "a48.wav", 16000)[0]
    assert via_stdin.shape == via_file.shape and np.abs(via_stdin - via_file).max() <= 1e-6


def test_the_agent_cli_streams_a_file_with_offline_probabilities(model):
    wav = SAMPLES / "06-surprised-espeak.wav"
    proc = run_cli("run", "--source", f"file:{wav}", "--pace", "fast", "--broker", "none", "--raw", "--no-gate")
    assert proc.returncode == 0, proc.stderr.decode()
    raw = [json.loads(line) for line in proc.stdout.decode().splitlines() if '"topic": "raw"' in line]
    ref = offline(model, read_wav(wav, 16000)[0], model.spec.hop_frames)
    assert [r["seq"] for r in raw] == list(range(len(ref)))
    got = np.array([[r["probabilities"][lab] for lab in model.spec.labels] for r in raw])
    assert np.abs(got - ref).max() <= 1e-6


def test_stdin_source_through_the_cli(model):
    x = read_wav(SAMPLES / "01-angry-espeak.wav", 16000)[0]
    pcm = pcm16(x)
    proc = run_cli("run", "--source", "-", "--rate", "16000", "--broker", "none", "--raw", "--no-gate", stdin=pcm)
    assert proc.returncode == 0, proc.stderr.decode()
    raw = [json.loads(line) for line in proc.stdout.decode().splitlines() if '"topic": "raw"' in line]
    ref = offline(model, np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, model.spec.hop_frames)
    got = np.array([[r["probabilities"][lab] for lab in model.spec.labels] for r in raw])
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-6


def test_the_gates_percentile_is_numpys_to_the_last_bit():
    from serkit.edge.stream import percentile

    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 999, 1000, 1001):
        x = rng.normal(-50, 10, n)
        for q in (0, 10, 33.3, 50, 90, 100):
            assert percentile(x, q) == float(np.percentile(x, q)), (n, q)
