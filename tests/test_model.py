"""The CNN-LSTM's optional centred copy: each window minus its own per-coefficient mean, beside the original."""

from __future__ import annotations

import numpy as np
import pytest

from serkit.trainer.model import ModelConfig, build_model

keras = pytest.importorskip("keras")


def _front(model):  # noqa: ANN001, ANN202
    return keras.Model(model.input, model.get_layer("with_centred").output)


def test_centre_feeds_the_window_and_its_mean_subtracted_copy():
    model = build_model(50, 6, 4, ModelConfig(conv_filters=(8,), rnn_units=4, centre=True))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 50, 6)).astype(np.float32)
    out = _front(model).predict(x, verbose=0)
    assert out.shape == (2, 50, 12)
    np.testing.assert_allclose(out[..., :6], x, atol=1e-6)
    np.testing.assert_allclose(out[..., 6:], x - x.mean(axis=1, keepdims=True), atol=1e-5)
    # A constant offset per coefficient (a fixed colouring of voice or microphone) leaves the copy unchanged.
    shifted = _front(model).predict(x + np.arange(6, dtype=np.float32) * 4.0, verbose=0)
    np.testing.assert_allclose(shifted[..., 6:], out[..., 6:], atol=1e-4)


def test_centre_is_opt_in_and_widens_only_the_first_convolution():
    plain = build_model(299, 40, 8, ModelConfig())
    centred = build_model(299, 40, 8, ModelConfig(centre=True))
    assert "with_centred" not in [layer.name for layer in plain.layers]
    assert centred.count_params() - plain.count_params() == 40 * 5 * 48  # 2 x 40 input channels instead of 40
    assert centred.count_params() <= 150_000


@pytest.mark.slow
def test_centred_model_converts_to_full_int8(tmp_path):
    from serkit.convert.tflite_convert import convert_int8_audited

    model = build_model(100, 12, 3, ModelConfig(conv_filters=(8, 8), rnn_units=8, centre=True))
    model.save(tmp_path / "m.keras")
    # Through the converter's own retry: now and then the quantizer leaves the unrolled LSTM's SPLIT
    # float for one calibration draw (seen once in ten CI runs here), and a fresh draw is the fix.
    report = convert_int8_audited(
        tmp_path / "m.keras",
        tmp_path / "m.tflite",
        lambda attempt: np.random.default_rng(attempt).normal(size=(16, 100, 12)).astype(np.float32),
    )
    assert report["problems"] == [], report["problems"]
    assert {"MEAN", "SUB", "CONCATENATION"} <= set(report["op_histogram"])
