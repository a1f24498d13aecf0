"""`serkit train --jobs N`: the runs of one command (folds, final model, teachers) side by side in processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import pytest
from conftest import _train_tiny, assert_error_last_line, run_cli, usage_error_line

from serkit.trainer.data import Augment
from serkit.trainer.jobs import _start_worker, execute, model_runs
from serkit.trainer.splits import Split
from serkit.trainer.train import TrainOptions


def test_a_model_with_teachers_is_its_teacher_runs_then_itself():
    split = Split([], [], [], {"kind": "speaker-independent"})
    runs = model_runs("fold 1/5", split, TrainOptions(seed=3, teachers=2), Path("out/fold1"))
    assert [r.out_dir for r in runs] == [
        Path("out/fold1/teachers/seed4"),
        Path("out/fold1/teachers/seed5"),
        Path("out/fold1"),
    ]
    assert [(r.options.seed, r.options.teachers) for r in runs] == [(4, 0), (5, 0), (3, 2)]
    assert runs[0].teachers == runs[1].teachers == ()
    assert runs[2].teachers == (runs[0].out_dir, runs[1].out_dir)
    assert all(r.split is split for r in runs)
    assert runs[2].title == "fold 1/5, distilled from 2 teachers"

    (only,) = model_runs("model", split, TrainOptions(), Path("out"))
    assert only.teachers == () and only.out_dir == Path("out") and only.title == "model"


def test_teachers_train_their_own_epochs_when_given():
    split = Split([], [], [], {"kind": "speaker-independent"})
    options = TrainOptions(epochs=90, min_epochs=90, patience=90, teachers=2, teacher_epochs=60)
    *teachers, model = model_runs("fold 1/5", split, options, Path("out/fold1"))
    assert [(t.options.epochs, t.options.min_epochs, t.options.teacher_epochs) for t in teachers] == [
        (60, 60, None)
    ] * 2
    assert model.options == options
    # Teachers learn on clean speech even when the model trains in rooms: they are shown the clean copies.
    rooms = replace(options, augment=Augment(room=True))
    *teachers, model = model_runs("fold 1/5", split, rooms, Path("out/fold1"))
    assert [t.options.augment.room for t in teachers] == [False, False] and model.options.augment.room
    # Unset, the teachers train the model's schedule.
    *teachers, _ = model_runs("fold 1/5", split, TrainOptions(epochs=70, teachers=2), Path("out/fold1"))
    assert [t.options.epochs for t in teachers] == [70, 70]


def test_execute_puts_back_the_sigterm_handler_it_found_and_runs_outside_the_main_thread():
    def mine(signum, frame):  # noqa: ANN001, ANN202
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert execute([], [], None) == {}
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
    # Only the main thread may set handlers; elsewhere execute runs without its own.
    results = []
    worker = threading.Thread(target=lambda: results.append(execute([], [], None)))
    worker.start()
    worker.join()
    assert results == [{}]


def test_jobs_below_one_is_a_one_line_error(corpus, tmp_path):
    proc = run_cli("train", str(corpus), "--folds", "2", "--jobs", "0", "--out", str(tmp_path / "r"))
    assert usage_error_line(proc) == "serkit train: error: argument --jobs: must be >= 1, got 0"


@pytest.mark.slow  # starts TensorFlow training in worker processes
def test_a_failing_run_stops_the_command_with_one_line_naming_it_and_its_log(tmp_path):
    pytest.importorskip("tensorflow")
    # RAVDESS names, no audio: the corpus is found, and every run fails on reading its clips.
    for actor in ("01", "02", "03", "04"):
        folder = tmp_path / "corpus" / f"Actor_{actor}"
        folder.mkdir(parents=True)
        for emotion in ("01", "05"):
            for take in ("01", "02"):
                (folder / f"03-01-{emotion}-01-{take}-01-{actor}.wav").write_text("not audio")
    out = tmp_path / "run"
    proc = run_cli(
        "train", str(tmp_path / "corpus"), "--folds", "2", "--jobs", "2", "--out", str(out),
        "--cache", str(tmp_path / "cache"), timeout=300,
    )  # fmt: skip
    last = assert_error_last_line(proc, "none of the 8 clips could be read", "(its log: ")
    fold = last.split("serkit: error: fold ")[1][0]
    assert f"(its log: {out / f'fold{fold}' / 'train.log'})" in last
    # The unreadable clips are listed in that run's log.
    assert "not a WAV file" in (out / f"fold{fold}" / "train.log").read_text()
    assert "leaked" not in proc.stderr.decode()  # the other worker was stopped cleanly


def _stat(pid: int) -> list[str]:
    """State, parent pid, ... of a process from /proc ("pid (name) state ppid ...", the name may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ["X"]  # gone


def _children(pid: int) -> set[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return {p for p in pids if _stat(p)[1:2] == [str(pid)]}


@pytest.mark.slow  # starts TensorFlow training in worker processes
def test_sigterm_stops_the_parallel_runs_instead_of_orphaning_them(corpus, tmp_path):
    pytest.importorskip("tensorflow")
    cmd = [sys.executable, "-m", "serkit", "train", str(corpus), "--folds", "2", "--jobs", "2", "--epochs", "200"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = 0
        for line in proc.stderr:  # both folds training in their workers
            started += line.startswith("started fold")
            if started == 2:
                break
        workers = _children(proc.pid)
        assert workers, "no worker processes found"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while (alive := {w for w in workers if _stat(w)[0] not in "XZ"}) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in alive:  # not to leave them training after the failure
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers left running: {alive}"
    rest = proc.stderr.read()
    assert "leaked" not in rest
    # One line saying what happened and which run folders are left incomplete, no traceback.
    assert "serkit: stopped by SIGTERM; the runs in training were stopped: fold " in rest, rest
    assert "incomplete" in rest and "Traceback" not in rest, rest


@pytest.mark.slow  # starts TensorFlow training in worker processes
def test_sigterm_in_one_process_names_the_run_it_left_incomplete(corpus, tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "serkit", "train", str(corpus), "--folds", "2", "--epochs", "200"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "--cache", str(tmp_path / "cache")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # fold 1 training, in this very process
            if line.startswith("epoch   2/200"):
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    rest = proc.stderr.read()
    stopped = f"serkit: stopped by SIGTERM; the runs in training were stopped: fold 1/2 ({out / 'fold1'}, incomplete)"
    assert stopped in rest and "Traceback" not in rest, rest


@pytest.mark.slow
def test_folds_final_model_and_teachers_train_side_by_side(corpus, refit_dir, tmp_path_factory):
    from serkit.edge.spec import ModelSpec

    # refit_dir's command with one teacher per model and two processes: six runs.
    args = ("--folds", "2", "--refit", "--epochs", "8", "--teachers", "1", "--jobs", "2")
    out, stdout = _train_tiny(corpus, tmp_path_factory, *args)
    assert "every speaker held out once" in stdout

    folders = [out / "fold1", out / "fold2", out]
    for folder in folders + [f / "teachers" / "seed1" for f in folders]:
        for name in ("model.keras", "model.json", "history.json", "training_curves.png"):
            assert (folder / name).stat().st_size > 0, folder / name
        # Each run's progress went to its own log, not to the terminal.
        log = (folder / "train.log").read_text()
        assert "epoch   8/8" in log and "epoch   1/8" in log, folder

    # The same folds as the one-process run: same speakers held out, each by the model and its teacher.
    cv, plain_cv = (json.loads((d / "cv_metrics.json").read_text()) for d in (out, refit_dir))
    assert [f["speakers"] for f in cv["per_fold"]] == [f["speakers"] for f in plain_cv["per_fold"]]
    for k, fold in enumerate(cv["per_fold"], 1):
        for folder in (out / f"fold{k}", out / f"fold{k}" / "teachers" / "seed1"):
            trained = ModelSpec.load(folder / "model.json").info["training"]["protocol"]["train_speakers"]
            assert not set(trained) & set(fold["speakers"]), folder
        assert "teacher_ensemble" in fold
    assert cv["pooled"]["clips"] == 96 and cv["accuracy"] > 0.5  # chance is 1/3

    spec = ModelSpec.load(out / "model.json")
    training = spec.info["training"]
    # The final model trained beside the folds; its estimate is the folds' line once they were done.
    assert "folds by speaker" in training["protocol"]["estimate"] and len(training["protocol"]["train_speakers"]) == 8
    assert spec.info["cross_validation"]["pooled"]["clips"] == 96
    assert spec.threshold > 0
    assert training["options"]["teachers"] == 1
    assert training["train_seconds_with_teachers"] > training["train_seconds"]


def test_a_worker_leaves_no_named_semaphore_behind_after_a_progress_bar():
    """tqdm's default lock is a named POSIX semaphore; a worker the executor terminates would leak it."""
    pytest.importorskip("tqdm")
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(1,)) as pool:
        made = pool.submit(_semaphores_made_by_a_progress_bar).result(timeout=60)
    assert made == []


def _semaphores_made_by_a_progress_bar() -> list[str]:
    from tqdm import tqdm

    before = set(os.listdir("/dev/shm"))
    for _ in tqdm(range(3), disable=True):
        pass
    return sorted(name for name in set(os.listdir("/dev/shm")) - before if name.startswith("sem."))
