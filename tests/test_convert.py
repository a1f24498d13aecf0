"""The real TFLite converter and interpreters, end to end, on a model trained by the tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_error_last_line, run_cli

pytest.importorskip("tensorflow")

from serkit.convert.audit import audit  # noqa: E402
from serkit.convert.tflite_convert import convert_in_subprocess  # noqa: E402
from serkit.edge.errors import SerkitError  # noqa: E402
from serkit.edge.runtime import TFLiteModel  # noqa: E402
from serkit.edge.spec import ModelSpec, spec_path_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(run_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    proc = run_cli("convert", str(run_dir), str(corpus), "--out", str(out), "--name", "tiny", "--no-cache", timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert "full int8" in proc.stdout.decode() and "speaker-independent" in proc.stdout.decode()
    return out


def test_convert_writes_an_audited_int8_model_with_its_spec(converted, run_dir):
    tflite, spec_path, report_path = (converted / f"tiny{s}" for s in (".tflite", ".json", ".report.json"))
    for p in (tflite, spec_path, report_path):
        assert p.stat().st_size > 0
    a = audit(tflite)
    assert a["problems"] == []
    assert a["input"]["dtype"] == "int8" and a["output"]["dtype"] == "int8"
    assert not any(op.startswith(("WHILE", "Flex", "CUSTOM")) for op in a["op_histogram"])
    assert set(a["tensor_dtypes"]) <= {"int8", "int32"}  # int32 only for biases
    spec = ModelSpec.load(spec_path)
    assert spec.input_quant is not None and spec.output_quant is not None
    assert spec.model_file == "tiny.tflite"
    assert 0 < spec.threshold <= 1
    assert spec.info["audit"]["file_bytes"] == tflite.stat().st_size
    assert spec.info["audit"]["arena_bytes_estimate"] > 0
    parity = spec.info["parity"]
    assert parity["passed"] and parity["protocol"]["held_out_speakers"] == ["ravdess:07", "ravdess:08"]
    assert parity["agreement_with_keras_float"]["tflite_int8"]["top1_agreement"] >= 0.97
    assert set(parity["int8_runtime_agreement"]) >= {"ai_edge_litert", "tensorflow"}
    # The spec round-trips and is what the edge reads.
    again = ModelSpec.from_dict(json.loads(spec_path.read_text()))
    assert again.to_dict() == spec.to_dict()
    assert spec.features == ModelSpec.load(run_dir / "model.json").features
    model = TFLiteModel(tflite, spec)
    probs = model.predict(np.zeros((2, spec.frames_per_window, spec.features.num_features), np.float32))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=0.02)


def test_int8_and_float_give_the_same_evaluation_within_the_gate(converted, run_dir, corpus):
    rep = {}
    for model in (run_dir, converted / "tiny.tflite"):
        proc = run_cli("evaluate", str(model), str(corpus), "--speakers", "07,08", "--json", "--no-cache")
        assert proc.returncode == 0, proc.stderr.decode()
        rep[model.suffix or "keras"] = json.loads(proc.stdout)
    assert rep[".tflite"]["model"]["kind"].startswith("tflite int8")
    assert rep[".tflite"]["accuracy"] >= rep["keras"]["accuracy"] - 0.01


def test_audit_rejects_a_model_left_float(run_dir, tmp_path):
    convert_in_subprocess(run_dir / "model.keras", tmp_path / "f.tflite", "float")
    problems = audit(tmp_path / "f.tflite")["problems"]
    assert any("input is float32" in p for p in problems)
    assert any("float ops" in p for p in problems)


def test_gate_failure_exits_non_zero_and_leaves_no_artifact(run_dir, corpus, tmp_path):
    import keras

    # One channel 300 times louder than the rest: float carries it, per-tensor int8 ranges cannot (the
    # other channels of that tensor fall to a few steps), so int8 loses accuracy and the gate refuses it.
    loud = tmp_path / "loud"
    loud.mkdir()
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    gamma, *rest = bn.get_weights()
    gamma[0] *= 300
    bn.set_weights([gamma, *rest])
    model.save(loud / "model.keras")
    shutil.copy(run_dir / "model.json", loud / "model.json")
    proc = run_cli(
        "convert", str(loud), str(corpus), "--out", str(tmp_path), "--name", "strict", "--no-cache", timeout=600
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert "tflite_int8" in err  # the table a person reads to see why
    last = err.strip().splitlines()[-1]
    assert last.startswith("serkit: error: parity gate failed, no model written"), last
    assert not (tmp_path / "strict.tflite").exists() and not (tmp_path / "strict.json").exists()
    rejected = json.loads((tmp_path / "strict.rejected.json").read_text())
    assert rejected["parity"]["passed"] is False


def test_non_unrolled_lstm_is_a_clear_error_not_a_crash(run_dir, corpus, tmp_path):
    import keras
    from keras import layers

    spec = ModelSpec.load(run_dir / "model.json")
    inp = keras.Input((spec.frames_per_window, spec.features.num_features))
    x = layers.LSTM(8)(inp)  # unroll=False: a WHILE loop in TFLite
    keras.Model(inp, layers.Dense(3, activation="softmax")(x)).save(tmp_path / "model.keras")
    shutil.copy(run_dir / "model.json", tmp_path / "model.json")
    proc = run_cli("convert", str(tmp_path), str(corpus), "--out", str(tmp_path / "out"), "--no-cache", timeout=600)
    line = assert_error_last_line(proc, "no model was written")
    assert "crashed" in line or "WHILE" in line, line
    assert "unroll" in line or "WHILE" in line
    assert not list((tmp_path / "out").glob("*.tflite")) if (tmp_path / "out").exists() else True
    with pytest.raises(SerkitError):
        convert_in_subprocess(
            tmp_path / "model.keras",
            tmp_path / "x.tflite",
            "int8",
            np.zeros((4, spec.frames_per_window, spec.features.num_features), np.float32),
        )
    assert not (tmp_path / "x.tflite").exists()


def test_refit_model_converts_with_named_speakers_and_says_they_were_seen(refit_dir, corpus, tmp_path):
    proc = run_cli("convert", str(refit_dir), "--data", str(corpus), "--out", str(tmp_path), "--no-cache")
    assert_error_last_line(proc, "trained on every speaker", "--speakers")
    proc = run_cli(
        "convert",
        str(refit_dir),
        "--data",
        str(corpus),
        "--speakers",
        "07,08",
        "--max-accuracy-drop",
        "100",  # an 8-epoch toy: this test is about the protocol, the gate has its own tests
        "--min-agreement",
        "0",
        "--out",
        str(tmp_path),
        "--no-cache",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert "SPEAKER-DEPENDENT" in proc.stdout.decode()
    spec = ModelSpec.load(tmp_path / "model-int8.json")
    parity = spec.info["parity"]["protocol"]
    assert parity["kind"] == "speaker-dependent"
    assert parity["training_speakers_included"] == ["ravdess:07", "ravdess:08"]
    # Confidence on voices it trained on would overstate it: the threshold stays the cross-validation one.
    assert spec.threshold == ModelSpec.load(refit_dir / "model.json").threshold


def test_shipped_int8_model_is_small_all_int8_and_matches_its_spec():
    from serkit.models import DEFAULT_MODEL

    spec = ModelSpec.load(spec_path_for(DEFAULT_MODEL))
    assert Path(DEFAULT_MODEL).stat().st_size <= 150 * 1024
    a = audit(Path(DEFAULT_MODEL))
    assert a["problems"] == []
    assert spec.info["parity"]["passed"]
    assert len(spec.labels) == 8
    TFLiteModel(DEFAULT_MODEL, spec)
