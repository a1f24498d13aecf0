"""Real training runs through the real CLI on speech-like audio the tests synthesize."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

pytest.importorskip("tensorflow")

from serkit.edge.spec import ModelSpec  # noqa: E402
from serkit.trainer.train import DEFAULT_FEATURES  # noqa: E402

pytestmark = pytest.mark.slow


def test_short_training_beats_chance_and_writes_a_complete_run(run_dir):
    for name in (
        "model.keras",
        "model.json",
        "metrics.json",
        "history.json",
        "training_curves.png",
        "confusion_matrix.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8, metrics["accuracy"]  # chance is 1/3
    assert metrics["protocol"]["kind"] == "speaker-independent"
    assert metrics["protocol"]["val_speakers"] == ["ravdess:07", "ravdess:08"]
    assert set(metrics["per_speaker"]) == {"ravdess:07", "ravdess:08"}
    assert {"precision", "recall", "f1"} <= set(metrics["per_class"]["happy"])
    spec = ModelSpec.load(run_dir / "model.json")
    assert spec.labels == ("neutral", "happy", "angry")
    assert spec.features == DEFAULT_FEATURES
    assert spec.frames_per_window == 99
    train_speakers = spec.info["training"]["protocol"]["train_speakers"]
    assert "ravdess:07" not in train_speakers and len(train_speakers) == 6
    assert spec.info["training"]["parameters"] <= 150_000


def test_evaluate_gives_the_same_numbers_for_keras_and_tflite(run_dir, corpus, tmp_path):
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (tmp_path / "float.tflite").write_bytes(tflite)
    shutil.copy(run_dir / "model.json", tmp_path / "float.json")
    reports = []
    for model_path in (run_dir, run_dir / "model.keras", tmp_path / "float.tflite"):
        proc = run_cli("evaluate", str(model_path), str(corpus), "--speakers", "07,08", "--json", "--no-cache")
        assert proc.returncode == 0, proc.stderr.decode()
        reports.append(json.loads(proc.stdout))
    keras_rep, _, tfl_rep = reports
    assert tfl_rep["model"]["kind"].startswith("tflite float")
    assert keras_rep["confusion_matrix"] == tfl_rep["confusion_matrix"]
    assert keras_rep["accuracy"] == tfl_rep["accuracy"] == reports[1]["accuracy"]
    assert keras_rep["log_loss"] == pytest.approx(tfl_rep["log_loss"], abs=1e-4)
    assert keras_rep["protocol"]["kind"] == "speaker-independent"
    # Training speakers are flagged: the number would not be honest otherwise.
    proc = run_cli("evaluate", str(run_dir), str(corpus), "--speakers", "01,07", "--json", "--no-cache")
    assert json.loads(proc.stdout)["protocol"]["kind"] == "speaker-dependent"


def test_predict_json_lines(run_dir, corpus):
    proc = run_cli("predict", str(run_dir), str(corpus / "Actor_07"), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 12
    for r in rows:
        assert set(r) == {"file", "emotion", "confidence", "probabilities"}
        assert r["emotion"] in ("neutral", "happy", "angry")
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-3
        assert r["confidence"] == max(r["probabilities"].values())
    correct = sum(
        r["emotion"] == {"01": "neutral", "03": "happy", "05": "angry"}[r["file"].split("/")[-1][6:8]] for r in rows
    )
    assert correct >= 9


def test_predict_and_evaluate_bad_inputs(run_dir, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert_one_line_error(run_cli("predict", str(run_dir), str(tmp_path / "bad.wav")), "bad.wav", "not a WAV")
    assert_one_line_error(run_cli("predict", str(tmp_path / "nomodel"), str(tmp_path)), "nomodel", "no such model")
    (tmp_path / "m.tflite").write_bytes(b"junk")
    assert_one_line_error(run_cli("predict", str(tmp_path / "m.tflite"), str(tmp_path)), "m.json", "spec not found")


def test_refit_trains_the_folds_then_every_speaker_and_carries_the_estimate(refit_dir):
    cv = json.loads((refit_dir / "cv_metrics.json").read_text())
    # Every clip is scored once, by the fold that held its speaker out.
    assert cv["pooled"]["clips"] == 96 and len(cv["pooled"]["per_speaker"]) == 8
    assert sum(map(sum, cv["pooled"]["confusion_matrix"])) == 96
    held = [set(f["speakers"]) for f in cv["per_fold"]]
    assert not held[0] & held[1] and len(held[0] | held[1]) == 8
    # The folds train the final model's fixed schedule: no early stop, no epoch picked on held-out speakers.
    assert [f["best_epoch"] for f in cv["per_fold"]] == [8, 8]
    assert cv["accuracy"] == pytest.approx(sum(f["accuracy"] for f in cv["per_fold"]) / 2)
    assert cv["accuracy"] > 0.5  # chance is 1/3
    # --room: the same held-out clips scored in simulated rooms, beside the clean figures, per fold and pooled.
    room = cv["room"]
    assert room["pooled"]["clips"] == 96 and all("room" in f for f in cv["per_fold"])
    assert room["accuracy"] == pytest.approx(sum(f["room"]["accuracy"] for f in cv["per_fold"]) / 2)
    assert sum(b["clips"] for b in room["by_rt60_s"]) == sum(b["clips"] for b in room["by_snr_db"]) == 96
    assert "in simulated rooms accuracy" in cv_line(refit_dir)
    assert (refit_dir / "cv_confusion_matrix.png").stat().st_size > 0
    from PIL import Image

    # The final model's curves were drawn before the folds finished: redrawn with the estimate in the title.
    curves_title = Image.open(refit_dir / "training_curves.png").text["Title"]
    assert curves_title.startswith("trained on every speaker, none held out (its accuracy estimate: accuracy ")
    assert "folds by speaker" in curves_title

    spec = ModelSpec.load(refit_dir / "model.json")
    protocol = spec.info["training"]["protocol"]
    assert protocol["kind"] == "all-speakers" and len(protocol["train_speakers"]) == 8
    assert protocol["held_out_speakers"] == [] and "folds by speaker" in protocol["estimate"]
    assert spec.info["training"]["protocol_description"] == curves_title  # the spec's words carry it too
    assert spec.info["validation"] is None and spec.info["cross_validation"]["pooled"]["clips"] == 96
    assert len(json.loads((refit_dir / "history.json").read_text())["loss"]) == 8
    assert not (refit_dir / "metrics.json").exists()  # no held-out speakers, so no metrics of its own
    # The publishing threshold comes from held-out voices, not from the voices the model trained on.
    folds = [json.loads((refit_dir / f"fold{i}" / "metrics.json").read_text()) for i in (1, 2)]
    medians = sorted(f["median_window_confidence"] for f in folds)
    assert spec.threshold == pytest.approx(sum(medians) / 2) and 0 < spec.threshold <= 1


def cv_line(run: Path) -> str:
    return ModelSpec.load(run / "model.json").info["training"]["protocol"]["estimate"]


def test_refit_without_folds_is_a_clear_error(corpus, tmp_path):
    proc = run_cli("train", str(corpus), "--refit", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "--refit needs --folds")
    assert not (tmp_path / "r").exists()


def test_room_share_without_training_rooms_is_a_clear_error(corpus, tmp_path):
    proc = run_cli("train", str(corpus), "--room-share", "0.4", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "--room-share needs --train-rooms")
    assert not (tmp_path / "r").exists()


def test_room_share_sets_the_share_of_room_windows():
    from serkit.cli import build_parser
    from serkit.trainer.commands import train_options

    parser = build_parser("train")
    args = parser.parse_args(["train", "x", "--train-rooms", "--room-share", "0.4"])
    assert train_options(args).augment.room and train_options(args).augment.room_prob == 0.4
    args = parser.parse_args(["train", "x", "--train-rooms"])
    assert train_options(args).augment.room_prob == 0.3


@pytest.mark.parametrize("flag", [("--patience", "5"), ("--min-epochs", "3"), ("--monitor", "uar")])
def test_early_stopping_flags_with_folds_are_a_clear_error(corpus, tmp_path, flag):
    # Ignoring them would let a user believe the folds stopped early; they train the fixed --epochs.
    proc = run_cli("train", str(corpus), "--folds", "2", *flag, "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, f"{flag[0]} cannot be used with --folds", "fixed --epochs")
    assert not (tmp_path / "r").exists()
