"""Ensemble distillation (`serkit train --teachers N`): teachers on the same speakers, their mean in the targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import _train_tiny, assert_one_line_error, run_cli, usage_error_line

from serkit.trainer.train import distil_targets


def test_distil_targets_blend_the_label_with_the_teachers_mean():
    labels = np.array([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0]])  # the second one mixed up
    t1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    t2 = np.array([[0.8, 0.1, 0.1], [0.0, 0.6, 0.4]])
    out = distil_targets(labels, [t1, t2], 0.5)
    np.testing.assert_allclose(out, [[0.85, 0.1, 0.05], [0.2, 0.55, 0.25]])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(distil_targets(labels, [t1], 0.0), labels)
    np.testing.assert_allclose(distil_targets(labels, [t1, t2], 1.0), (t1 + t2) / 2)


def test_the_training_dataset_carries_the_teachers_mean_on_the_clean_windows():
    tf = pytest.importorskip("tensorflow")
    import keras

    from serkit.trainer.train import distilled

    def teacher(seed: int) -> keras.Model:
        inp = keras.Input((5, 4))
        out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
        model = keras.Model(inp, out)
        model.layers[-1].kernel.assign(np.random.default_rng(seed).normal(size=(20, 3)))
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 4)).astype(np.float32)  # what the model is shown (say, in a room)
    clean = rng.normal(size=(6, 5, 4)).astype(np.float32)  # the same windows heard clean
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    w = np.arange(1, 7, dtype=np.float32)
    teachers = [teacher(1), teacher(2)]
    batches = list(distilled(tf.data.Dataset.from_tensor_slices((x, clean, y, w)).batch(4), teachers, 0.25))
    assert [len(b[0]) for b in batches] == [4, 2] and all(len(b) == 3 for b in batches)
    got_x, got_y, got_w = (np.concatenate([b[i] for b in batches]) for i in range(3))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_w, w)
    on_clean = (teachers[0](clean).numpy() + teachers[1](clean).numpy()) / 2
    on_x = (teachers[0](x).numpy() + teachers[1](x).numpy()) / 2
    np.testing.assert_allclose(got_y, 0.75 * y + 0.25 * on_clean, rtol=1e-5)
    assert not np.allclose(got_y, 0.75 * y + 0.25 * on_x, atol=1e-3)


def test_train_refuses_a_negative_teacher_count(tmp_path):
    proc = run_cli("train", str(tmp_path), "--teachers", "-1")
    assert usage_error_line(proc) == "serkit train: error: argument --teachers: must be >= 0, got -1"


@pytest.mark.parametrize("flag", [("--teacher-epochs", "40")])
def test_teacher_options_without_teachers_are_a_clear_error(corpus, tmp_path, flag):
    # Accepting them would let a user believe the model was distilled.
    proc = run_cli("train", str(corpus), *flag, "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, f"{flag[0]} needs --teachers N")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_distilled_run_trains_its_teachers_on_the_same_speakers_and_reports_them(corpus, run_dir, tmp_path_factory):
    pytest.importorskip("tensorflow")
    from serkit.edge.spec import ModelSpec

    # The same command as run_dir, plus one teacher, of 12 epochs, taking half of each target.
    args = ("--val-speakers", "07,08", "--epochs", "14", "--min-epochs", "4", "--teachers", "1")
    out, stdout = _train_tiny(corpus, tmp_path_factory, *args, "--teacher-epochs", "12")
    assert "speaker-independent" in stdout

    teacher = out / "teachers" / "seed1"
    for name in ("model.keras", "model.json", "metrics.json"):
        assert (teacher / name).stat().st_size > 0, name
    t_spec, s_spec = ModelSpec.load(teacher / "model.json"), ModelSpec.load(out / "model.json")
    t_train, s_train = t_spec.info["training"], s_spec.info["training"]
    assert t_train["options"]["seed"] == 1 and t_train["options"]["teachers"] == 0
    assert s_train["options"]["seed"] == 0 and s_train["options"]["teachers"] == 1
    assert s_train["options"]["distil_weight"] == 0.5
    assert (t_train["options"]["epochs"], s_train["options"]["epochs"]) == (12, 14)
    assert len(json.loads((teacher / "history.json").read_text())["loss"]) <= 12
    # The teacher never heard the held-out speakers either.
    assert t_train["protocol"]["train_speakers"] == s_train["protocol"]["train_speakers"]
    assert "ravdess:07" not in t_train["protocol"]["train_speakers"]
    assert s_train["train_seconds_with_teachers"] > s_train["train_seconds"] + t_train["train_seconds"]
    assert s_train["parameters"] == json.loads((run_dir / "model.json").read_text())["training"]["parameters"]

    metrics = json.loads((out / "metrics.json").read_text())
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())
    # With one teacher its "ensemble" is the teacher itself, scored on the same held-out clips.
    assert metrics["teacher_ensemble"]["accuracy"] == pytest.approx(teacher_metrics["accuracy"])
    assert metrics["teacher_ensemble"]["uar"] == pytest.approx(teacher_metrics["uar"])
    assert metrics["accuracy"] >= 0.8  # chance is 1/3
