"""Training augmentation on real WAV files and the real feature cache (numpy only, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pcm16, speechlike, wav_bytes

from edge.features import FeatureConfig, num_frames
from trainer.corpora import Clip
from trainer.data import Augment, ClipStore, TrainingStream, change_speed

RATE = 16000


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_change_speed_scales_length_and_pitch_together(factor):
    t = np.arange(RATE * 2) / RATE
    tone = np.sin(2 * np.pi * 300.0 * t)
    out = change_speed(tone, factor)
    assert abs(len(out) - len(tone) / factor) <= 1
    assert dominant_hz(out) == pytest.approx(300.0 * factor, abs=1.0)
    # the resampling filter keeps the level (no gain change hidden in the augmentation)
    core = out[len(out) // 4 : -len(out) // 4]
    assert np.sqrt(np.mean(core**2)) == pytest.approx(np.sqrt(0.5), rel=0.01)


def test_change_speed_refuses_absurd_factors():
    with pytest.raises(ValueError, match="speed factor 3"):
        change_speed(np.zeros(100), 3.0)


def make_clips(tmp_path, n: int = 2) -> list[Clip]:
    clips = []
    for i in range(n):
        path = tmp_path / f"clip{i}.wav"
        path.write_bytes(wav_bytes(pcm16(speechlike(2.0, RATE, seed=i))))
        clips.append(Clip(path, "happy", f"test:{i}", "test"))
    return clips


def make_stream(clips, cache, augment: Augment) -> TrainingStream:
    config = FeatureConfig(numcep=13, nfilt=26)
    store = ClipStore(config, cache)
    n = config.num_features
    return TrainingStream(store, clips, [0] * len(clips), np.zeros(n), np.ones(n), 150, 2, np.ones(1), augment, seed=0)


def test_speed_variants_are_cached_up_front_and_drawn_in_training(tmp_path):
    clips = make_clips(tmp_path)
    cache = tmp_path / "cache"
    augment = Augment(noise=False, speed_prob=1.0)
    stream = make_stream(clips, cache, augment)
    stream.prepare()
    kinds = sorted(p.name.rsplit("-", 1)[-1] for p in cache.glob("features-*-speed*"))
    assert kinds == ["speed0.9", "speed0.95", "speed1.05", "speed1.1"]
    assert all(len(list((cache / f"features-{stream.store._cfg_key}-{k}").rglob("*.npy"))) == 2 for k in kinds)

    config = stream.store.config
    lengths = {num_frames(round(2.0 * RATE / f), config): f for f in augment.speeds}
    drawn = {lengths[len(stream._variant(clips[0]))] for _ in range(40)}
    assert drawn == set(augment.speeds)  # every factor, and never the unchanged clip
    batch, _, _ = next(stream.batches())
    assert batch.shape == (2, 150, config.num_features) and np.isfinite(batch).all()


def test_speed_switched_off_reads_only_clean_and_noisy_features(tmp_path):
    clips = make_clips(tmp_path, 1)
    cache = tmp_path / "cache"
    stream = make_stream(clips, cache, Augment(speed=False, noise_variants=2))
    stream.prepare()
    assert not list(cache.glob("features-*-speed*"))
    assert len(list(cache.glob("features-*-noise*"))) == 2
    clean = num_frames(2 * RATE, stream.store.config)
    assert {len(stream._variant(clips[0])) for _ in range(20)} == {clean}
