"""Training augmentation on real WAV files and the real feature cache (numpy only, no TensorFlow)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import pcm16, speechlike, wav_bytes

from serkit.edge.features import FeatureConfig, FeatureExtractor, num_frames
from serkit.trainer.corpora import Clip
from serkit.trainer.data import Augment, ClipStore, TrainingStream, change_speed, warp_matrix

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
    drawn = {lengths[len(stream._variant(clips[0])[0])] for _ in range(40)}
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
    assert {len(stream._variant(clips[0])[0]) for _ in range(20)} == {clean}


def test_outside_rooms_the_teachers_see_the_models_own_windows(tmp_path):
    clips = make_clips(tmp_path, 2)
    everything = Augment(noise_variants=2, warp_prob=1.0, time_mask_frames=40)  # speed, noise, masks, mixup...
    stream = make_stream(clips, tmp_path / "cache", everything)
    stream.teacher_view = True
    for x, xc, y, w in (b for b, _ in zip(stream.batches(), range(10), strict=False)):
        assert x.shape == xc.shape == (2, stream.T, 13) and y.shape == (2, 1) and w.shape == (2,)
        np.testing.assert_array_equal(x, xc)
    assert len(next(make_stream(clips, tmp_path / "cache", everything).batches())) == 3  # no teachers: as before


def test_mixup_blends_windows_labels_and_weights_alike(tmp_path):
    clips = make_clips(tmp_path, 2)
    config = FeatureConfig(numcep=13, nfilt=26)
    store = ClipStore(config, tmp_path / "cache")
    n = config.num_features
    # every other augmentation off, so each clip's window is fixed and the blend can be checked exactly
    plain = Augment(noise=False, gain=False, shift=False, specaugment=False, speed=False, warp=False, mixup=False)
    weights = np.array([1.0, 3.0])

    def stream(augment: Augment) -> TrainingStream:
        return TrainingStream(store, clips, [0, 1], np.zeros(n), np.ones(n), 150, 2, weights, augment, seed=3)

    unmixed = stream(plain)
    windows = {label: unmixed._crop(label)[0] for label in (0, 1)}
    x, y, w = next(unmixed.batches())
    assert sorted(map(tuple, y)) == [(0.0, 1.0), (1.0, 0.0)] and sorted(w) == [1.0, 3.0]

    shares = []
    for x, y, w in (b for b, _ in zip(stream(replace(plain, mixup=True)).batches(), range(30), strict=False)):
        assert y.dtype == np.float32 and np.allclose(y.sum(axis=1), 1.0)
        for row in range(2):
            lam0 = float(y[row, 0])  # the share of clip 0's window, whichever clip the row started from
            shares.append(max(lam0, 1 - lam0))
            np.testing.assert_allclose(x[row], lam0 * windows[0] + (1 - lam0) * windows[1], atol=1e-5)
            assert w[row] == pytest.approx(lam0 * 1.0 + (1 - lam0) * 3.0)
    shares = np.array(shares)
    assert (shares >= 0.5).all() and (shares < 1.0).any() and (shares > 0.9).any()


def formant_speech(hz: tuple[float, ...], seconds: float = 1.0) -> np.ndarray:
    """A 120 Hz pulse train through resonances at `hz`: a crude vowel whose formants we choose."""
    n = int(seconds * RATE)
    excitation = np.zeros(n)
    excitation[:: RATE // 120] = 1.0
    spectrum = np.fft.rfft(excitation)
    f = np.fft.rfftfreq(n, 1 / RATE)
    envelope = sum(1.0 / (1.0 + ((f - h) / 80.0) ** 2) for h in hz) + 1e-3
    return np.fft.irfft(spectrum * envelope, n)


def test_warp_moves_formants_as_a_shorter_vocal_tract_would():
    config = FeatureConfig(numcep=40, nfilt=40, lowfreq=50.0)
    np.testing.assert_allclose(warp_matrix(config, 1.0)[1:, 1:], np.eye(39), atol=1e-5)
    extractor = FeatureExtractor(config)
    formants = (500.0, 1500.0, 2500.0)
    base = extractor.extract(formant_speech(formants))[5:-5].mean(axis=0)
    for alpha in (0.9, 1.1):
        target = extractor.extract(formant_speech(tuple(alpha * h for h in formants)))[5:-5].mean(axis=0)
        warped = base @ warp_matrix(config, alpha)
        # c1.. of the warped frame land much nearer the real moved-formant frame than the original did
        assert np.linalg.norm(warped[1:] - target[1:]) < 0.5 * np.linalg.norm(base[1:] - target[1:]), alpha


def test_warped_windows_keep_loudness_and_vary(tmp_path):
    clips = make_clips(tmp_path, 1)
    plain = Augment(noise=False, gain=False, shift=False, specaugment=False, speed=False, mixup=False, warp=False)
    config = FeatureConfig(numcep=13, nfilt=26)
    store = ClipStore(config, tmp_path / "cache")
    n = config.num_features
    args = (store, clips, [0], np.zeros(n), np.ones(n), 150, 1, np.ones(1))
    clean = TrainingStream(*args, plain, seed=0)._crop(0)[0]
    warping = TrainingStream(*args, replace(plain, warp=True, warp_prob=1.0), seed=0)
    crops = [warping._crop(0)[0] for _ in range(10)]
    for crop in crops:
        np.testing.assert_array_equal(crop[:, 0], clean[:, 0])
    assert sum(not np.allclose(crop[:, 1:], clean[:, 1:], atol=1e-3) for crop in crops) >= 8
