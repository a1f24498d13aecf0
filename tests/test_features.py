from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import speechlike
from hypothesis import given, settings
from hypothesis import strategies as st

python_speech_features = pytest.importorskip("python_speech_features")

from serkit.edge.audio import read_wav  # noqa: E402
from serkit.edge.errors import SerkitError  # noqa: E402
from serkit.edge.features import FeatureConfig, FeatureExtractor, delta, mfcc, num_frames  # noqa: E402

WINFUNCS = {"hamming": np.hamming, "hann": np.hanning, "rectangular": lambda n: np.ones((n,))}


def reference(signal: np.ndarray, c: FeatureConfig) -> np.ndarray:
    """python_speech_features with the same settings, deltas stacked the way serkit stacks them."""
    feat = python_speech_features.mfcc(
        np.asarray(signal, dtype=np.float64),
        samplerate=c.sample_rate,
        winlen=c.winlen,
        winstep=c.winstep,
        numcep=c.numcep,
        nfilt=c.nfilt,
        nfft=c.nfft,
        lowfreq=c.lowfreq,
        highfreq=c.highfreq,
        preemph=c.preemph,
        ceplifter=c.ceplifter,
        appendEnergy=c.append_energy,
        winfunc=WINFUNCS[c.window],
    )
    out = [feat]
    for _ in range(c.delta_order):
        out.append(python_speech_features.delta(out[-1], c.delta_width))
    return np.hstack(out)


CONFIGS = [
    FeatureConfig(),
    FeatureConfig(delta_order=2),
    FeatureConfig(numcep=20, nfilt=40, delta_order=1, delta_width=3),
    FeatureConfig(lowfreq=60, highfreq=7600, ceplifter=0, append_energy=False, window="hann"),
    FeatureConfig(sample_rate=8000, winlen=0.032, winstep=0.016, nfft=256, preemph=0.0, window="rectangular"),
    FeatureConfig(winlen=0.025, winstep=0.0125, nfft=1024, numcep=26, nfilt=26),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"cep{c.numcep}-filt{c.nfilt}-d{c.delta_order}-{c.window}")
def test_parity_with_python_speech_features_on_synthetic_speech(config):
    x = speechlike(2.3, config.sample_rate, seed=1) * 32768.0  # int16 scale, as psf users usually feed it
    ref = reference(x, config)
    got64 = mfcc(x, config, dtype=np.float64)
    got32 = mfcc(x, config)
    assert got64.shape == ref.shape == (num_frames(len(x), config), config.num_features)
    assert got32.dtype == np.float32 and got64.dtype == np.float64
    assert np.abs(got64 - ref).max() <= 1e-6
    assert np.abs(got32 - ref).max() <= 1e-4


def test_parity_on_real_speech(shared_data):
    clips = sorted((shared_data / "ravdess-48k-sample").glob("*/*.wav"))
    if not clips:
        pytest.skip(f"no clips under {shared_data / 'ravdess-48k-sample'}")
    config = FeatureConfig(delta_order=2)
    for clip in clips:
        x, _ = read_wav(clip, 16000)
        ref = reference(x, config)
        assert np.abs(mfcc(x, config, dtype=np.float64) - ref).max() <= 1e-6, clip
        assert np.abs(mfcc(x, config) - ref).max() <= 1e-4, clip


def test_delta_matches_reference():
    feat = np.random.default_rng(3).standard_normal((57, 13))
    for width in (1, 2, 4):
        assert np.abs(delta(feat, width) - python_speech_features.delta(feat, width)).max() <= 1e-12


def test_silence_and_tiny_signals_match_reference():
    config = FeatureConfig(delta_order=2)
    for n in (1, 10, 399, 400, 401, 560):
        x = np.zeros(n)
        x[: n // 2] = 0.1
        assert np.abs(mfcc(x, config, dtype=np.float64) - reference(x, config)).max() <= 1e-6, n


def _stream(config: FeatureConfig, x: np.ndarray, sizes: list[int], dtype=np.float64) -> np.ndarray:
    ex = FeatureExtractor(config, dtype=dtype)
    parts, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        parts.append(ex.push(x[i : i + n]))
        i, k = i + n, k + 1
    parts.append(ex.flush())
    return np.concatenate(parts)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=12),
    delta_order=st.integers(0, 2),
    n=st.integers(min_value=1, max_value=24000),
)
def test_incremental_equals_one_shot_for_any_chunking(sizes, delta_order, n):
    config = FeatureConfig(delta_order=delta_order)
    x = speechlike(1.5, seed=2)[:n].astype(np.float64)
    one_shot = mfcc(x, config, dtype=np.float64)
    streamed = _stream(config, x, sizes)
    assert streamed.shape == one_shot.shape
    assert np.abs(streamed - one_shot).max(initial=0) <= 1e-6


def test_incremental_float32_and_rows_arrive_as_soon_as_complete():
    config = FeatureConfig(delta_order=2, delta_width=2)
    x = speechlike(1.0, seed=4)
    ex = FeatureExtractor(config)
    first = ex.push(x[: config.frame_len - 1])
    assert first.shape == (0, config.num_features)
    # 10 complete frames in; deltas of order 2 hold back 2 * width of them for look-ahead.
    got = ex.push(x[config.frame_len - 1 : config.frame_len + 9 * config.frame_step])
    assert got.shape == (10 - config.lookahead_frames, config.num_features)
    rest = ex.push(x[config.frame_len + 9 * config.frame_step :])
    tail = ex.flush()
    streamed = np.concatenate([got, rest, tail])
    assert streamed.dtype == np.float32
    assert np.abs(streamed - mfcc(x, config)).max() <= 1e-5


def test_flush_resets_and_reset_starts_over():
    config = FeatureConfig(delta_order=1)
    x = speechlike(0.7, seed=5)
    ex = FeatureExtractor(config, dtype=np.float64)
    ex.push(x[:3000])
    ex.reset()
    a = np.concatenate([ex.push(x), ex.flush()])
    b = np.concatenate([ex.push(x), ex.flush()])  # flush left it fresh
    assert np.array_equal(a, b)
    assert ex.flush().shape == (0, config.num_features)


def test_long_signal_streams_in_bounded_memory():
    config = FeatureConfig(delta_order=2)
    ex = FeatureExtractor(config, dtype=np.float64)
    x = speechlike(20.0, seed=6).astype(np.float64)
    for i in range(0, len(x), 160):
        ex.push(x[i : i + 160])
    assert len(ex._rows) <= 256  # the assembly buffer keeps only the delta look-back, not the history
    assert ex._sbuf.size <= 4 * config.frame_len + 4096


def test_config_round_trip_through_json():
    for c in CONFIGS:
        d = json.loads(json.dumps(c.to_dict()))
        assert FeatureConfig.from_dict(d) == c
        assert FeatureConfig.from_dict(d).to_dict() == c.to_dict()


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"bogus": 1}, "unknown key(s) bogus"),
        ({"numcep": 0}, "numcep must be >= 1"),
        ({"numcep": 13.5}, "numcep must be an integer"),
        ({"numcep": True}, "numcep must be an integer"),
        ({"numcep": 30, "nfilt": 26}, "numcep (30) must not exceed nfilt (26)"),
        ({"nfft": 256}, "nfft (256) is smaller than the frame (400 samples"),
        ({"highfreq": 9000}, "highfreq must be <= 8000"),
        ({"lowfreq": 8000}, "lowfreq (8000) must be below highfreq"),
        ({"window": "blackman"}, "window must be one of hamming, hann, rectangular"),
        ({"delta_order": 3}, "delta_order must be <= 2"),
        ({"preemph": float("nan")}, "preemph must be finite"),
        ({"append_energy": "yes"}, "append_energy must be true or false"),
        ({"sample_rate": "16k"}, "sample_rate must be an integer"),
    ],
)
def test_bad_config_is_rejected_with_the_key_named(change, needle):
    d = {**FeatureConfig().to_dict(), **change}
    with pytest.raises(SerkitError) as err:
        FeatureConfig.from_dict(d, where="spec.json: features")
    assert needle in str(err.value)
    assert str(err.value).startswith("spec.json: features")


def test_an_extractor_refuses_a_config_it_cannot_compute():
    with pytest.raises(SerkitError, match="numcep .40. must not exceed nfilt .26."):
        FeatureExtractor(FeatureConfig(numcep=40))


def test_missing_key_is_an_error_not_a_default():
    d = FeatureConfig().to_dict()
    del d["preemph"]
    with pytest.raises(SerkitError, match="missing key"):
        FeatureConfig.from_dict(d)
    with pytest.raises(SerkitError, match="expected a table"):
        FeatureConfig.from_dict([1, 2])


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False) | st.integers(0, 10**5).map(lambda k: k + 0.5))
def test_frame_rounding_is_python_speech_features_decimal_half_up(x):
    import decimal

    from serkit.edge.features import _round_half_up

    expected = int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))
    assert _round_half_up(x) == expected
