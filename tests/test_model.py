"""The CNN-LSTM's shapes: depthwise-separable convolutions for a small int8 file, and teachers of another width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serkit.trainer.model import ModelConfig
from serkit.trainer.splits import Split
from serkit.trainer.train import TrainOptions


def test_teachers_can_be_a_wider_network_than_the_model_they_teach():
    from serkit.trainer.jobs import model_runs

    small = ModelConfig(conv_filters=(48, 64, 64, 64, 64), separable=True)
    wide = ModelConfig(conv_filters=(48, 64, 64, 64))
    options = TrainOptions(model=small, teachers=2, teacher_model=wide, teacher_epochs=60, epochs=90)
    *teachers, model = model_runs("fold 1", Split([], [], [], {}), options, Path("out"))
    assert [t.options.model for t in teachers] == [wide, wide]
    assert [t.options.epochs for t in teachers] == [60, 60] and model.options.epochs == 90
    assert model.options.model == small and model.teachers == tuple(t.out_dir for t in teachers)
    assert all(t.options.teachers == 0 and t.options.teacher_model is None for t in teachers)


def test_separable_convolutions_keep_the_shape_at_a_fraction_of_the_weights():
    keras = pytest.importorskip("keras")
    from serkit.trainer.model import build_model

    plain = build_model(299, 40, 8, ModelConfig())
    separable = build_model(299, 40, 8, ModelConfig(conv_filters=(48, 64, 64, 64, 64), separable=True))
    assert sum(isinstance(layer, keras.layers.SeparableConv1D) for layer in separable.layers) == 5
    assert separable.output_shape == plain.output_shape == (None, 8)
    assert separable.count_params() < plain.count_params() / 2


@pytest.mark.slow
def test_separable_model_converts_to_full_int8_under_100_kb(tmp_path):
    pytest.importorskip("keras")
    from serkit.convert.tflite_convert import convert_int8_audited
    from serkit.trainer.model import build_model

    model = build_model(299, 40, 8, ModelConfig(conv_filters=(48, 64, 64, 64, 64), separable=True))
    model.save(tmp_path / "m.keras")
    # Through the converter's own retry: now and then the quantizer leaves an op float for one draw.
    report = convert_int8_audited(
        tmp_path / "m.keras",
        tmp_path / "m.tflite",
        lambda attempt: np.random.default_rng(attempt).normal(size=(32, 299, 40)).astype(np.float32),
    )
    assert report["problems"] == [], report["problems"]
    assert "DEPTHWISE_CONV_2D" in report["op_histogram"]
    assert report["file_bytes"] <= 100 * 1024
