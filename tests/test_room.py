"""Simulated rooms: deterministic for a seed, the clip's length and level kept, the SNR asked for, cached."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_cli

pytest.importorskip("pyroomacoustics")

from serkit.trainer.room import TEST_ROOMS, TRAIN_ROOMS, babble_talkers, mix_at_snr, room_bank, simulate  # noqa: E402

RATE = 16000
# The test recipe's ranges with two short-reverberation rooms: the same code, seconds instead of a minute.
SMALL = replace(TEST_ROOMS, name="two rooms", rooms=2, rt60_s=(0.2, 0.3))


def _voice(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope: speech-like enough to reverberate."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return room_bank(SMALL, RATE, tmp_path_factory.mktemp("rooms"))


def test_the_same_seed_gives_the_same_room_and_noise_and_another_clip_another(bank):
    x = _voice()
    first, condition = simulate(x, bank, SMALL, RATE, "03-01-05-01-01-01-07.wav")
    again, same = simulate(x, bank, SMALL, RATE, "03-01-05-01-01-01-07.wav")
    np.testing.assert_array_equal(first, again)
    assert condition == same
    other, _ = simulate(x, bank, SMALL, RATE, "03-01-05-01-01-02-07.wav")
    assert not np.allclose(first, other)
    assert SMALL.snr_db[0] <= condition.snr_db <= SMALL.snr_db[1]
    assert SMALL.rt60_s[0] <= condition.rt60_s <= SMALL.rt60_s[1]


def test_a_bank_is_the_same_computed_twice_and_read_from_its_cache(bank, tmp_path):
    irs, rt60 = room_bank(SMALL, RATE, None)
    for a, b in zip(irs, bank[0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rt60, bank[1])
    assert not any(tmp_path.iterdir())


def test_the_clip_keeps_its_length_and_its_level(bank):
    x = _voice(1.3)
    y, _ = simulate(x, bank, SMALL, RATE, "a.wav")
    assert y.shape == x.shape and y.dtype == np.float32
    rms = lambda v: float(np.sqrt(np.mean(np.asarray(v, np.float64) ** 2)))  # noqa: E731
    assert rms(y) == pytest.approx(rms(x), rel=1e-3)


@pytest.mark.parametrize("snr", [0.0, 5.0, 12.5, 20.0])
def test_mixing_hits_the_snr_asked_for(snr):
    rng = np.random.default_rng(int(snr))
    signal, noise = _voice(2.0), rng.standard_normal(2 * RATE)
    mixed = mix_at_snr(signal.astype(np.float64), noise, snr)
    measured = 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean((mixed - signal) ** 2))
    assert measured == pytest.approx(snr, abs=0.5)


def test_a_simulated_clip_holds_its_drawn_snr_within_half_a_decibel(bank):
    from serkit.trainer.room import reverberate

    x = _voice(3.0).astype(np.float64)
    for name in ("a.wav", "b.wav", "c.wav"):
        y, condition = simulate(x, bank, SMALL, RATE, name)
        wet = reverberate(x, bank[0][condition.room])
        scale = float(np.dot(y, wet) / np.dot(wet, wet))  # y = scale * (wet + noise); noise is uncorrelated
        noise = y / scale - wet
        measured = 10 * np.log10(np.mean(wet**2) / np.mean(noise**2))
        assert measured == pytest.approx(condition.snr_db, abs=0.5), name


def test_babble_comes_from_other_speakers_and_the_recipes_differ():
    others = [("a.wav", "s1"), ("b.wav", "s1"), ("c.wav", "s2"), ("d.wav", "s3"), ("e.wav", "s3")]
    chosen = babble_talkers(TEST_ROOMS, "a.wav", "s1", others)
    assert len(chosen) == 3 and all(others[i][1] != "s1" for i in chosen)
    assert chosen == babble_talkers(TEST_ROOMS, "a.wav", "s1", others)
    assert "babble" not in TRAIN_ROOMS.noises and TRAIN_ROOMS.seed != TEST_ROOMS.seed


def test_room_variants_are_cached_once_and_drawn_in_training(tmp_path, monkeypatch):
    import serkit.trainer.data as data
    from serkit.edge.audio import write_wav
    from serkit.trainer.corpora import Clip
    from serkit.trainer.data import Augment, ClipStore, TrainingStream, compute_variants
    from serkit.trainer.train import DEFAULT_FEATURES

    monkeypatch.setattr(data, "TRAIN_ROOMS", replace(TRAIN_ROOMS, rooms=2, rt60_s=(0.2, 0.3)))
    clips = []
    for i in range(2):
        path = tmp_path / f"03-01-0{i + 1}-01-01-01-01.wav"
        write_wav(path, _voice(1.5, seed=i), RATE)
        clips.append(Clip(path, "neutral" if i == 0 else "calm", "s1", "test"))
    store = ClipStore(DEFAULT_FEATURES, tmp_path / "cache")
    augment = Augment(noise=False, speed=False, room=True, room_variants=2, room_prob=1.0)
    compute_variants(store, clips, augment, desc=None)
    cached = sorted((tmp_path / "cache").glob("features-*-room*/*/*.npy"))
    assert len(cached) == 4  # two clips x two variants
    stamps = [p.stat().st_mtime_ns for p in cached]
    compute_variants(store, clips, augment, desc=None)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read, not computed again
    stream = TrainingStream(store, clips, [0, 1], np.zeros(40), np.ones(40), 50, 2, np.ones(2), augment, 0)
    drawn, clean = stream._variant(clips[0])
    assert any(np.array_equal(drawn, np.load(p)) for p in cached)
    np.testing.assert_array_equal(clean, store.features(clips[0]))  # what the teachers are shown instead

    # In a room the teachers see the same window of the clean clip, with the model's masks.
    fixed = replace(augment, gain=False, warp=False, mixup=False, shift=False, time_mask_frames=20)
    stream = TrainingStream(store, clips, [0, 1], np.zeros(40), np.ones(40), 50, 2, np.ones(2), fixed, 0, True)
    for _ in range(5):
        window, teachers = stream._crop(0)
        clean = np.asarray(store.features(clips[0]))
        start = (len(clean) - 50) // 2
        masked = window == 0
        assert (window == 0).all(axis=1).any()  # whole frames masked (and bands)
        np.testing.assert_array_equal(teachers == 0, masked)  # the same frames and bands masked
        np.testing.assert_array_equal(teachers[~masked], clean[start : start + 50][~masked])
        assert not np.allclose(window[~masked], teachers[~masked])  # the model hears the room


@pytest.mark.slow
def test_evaluate_room_scores_the_same_clips_in_rooms_through_the_cli(run_dir, corpus, tmp_path):
    args = ("evaluate", str(run_dir), str(corpus), "--speakers", "07,08", "--room", "--cache", str(tmp_path))
    proc = run_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    room = report["room"]
    assert room["clips"] == report["clips"] and room["condition"]["recipe"]["name"] == TEST_ROOMS.name
    for by in ("by_rt60_s", "by_snr_db"):
        assert sum(b["clips"] for b in room[by]) == room["clips"]
    text = run_cli(*args).stdout.decode()  # from the cache this time: the same figures
    assert "the same clips in simulated rooms" in text and "by reverberation time" in text
    assert f"accuracy : {room['accuracy'] * 100:5.1f}%" in text


def test_room_with_a_clip_split_is_refused_in_one_line(tmp_path):
    from conftest import assert_one_line_error, cli

    proc = cli("train", str(tmp_path), "--clip-split", "--room", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "--room scores held-out speakers, and --clip-split holds none out")
    assert not (tmp_path / "r").exists()
