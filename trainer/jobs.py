"""The training runs of one command as a small job graph, run one after another or side by side.

A model with teachers is several runs (the teachers, then the model that learns from them), and
`--folds K --refit` is K+1 such models. None of them depends on another except a model on its own
teachers, so with `--jobs N` up to N runs train at once, each in its own process (TensorFlow keeps
process-wide state, and one small model cannot keep several cores busy: two runs with one thread
each train nearly twice as fast as one run with two). A parallel run writes its progress to
train.log in its run folder; this process prints one line as each starts and ends. Outcomes are
the same runs, seeds and folders as with one job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import active_children, get_context
from pathlib import Path

from serkit.edge.errors import SerkitError
from serkit.edge.features import FeatureConfig
from serkit.edge.spec import ModelSpec
from serkit.trainer.corpora import Clip
from serkit.trainer.data import Augment, ClipStore, compute_variants
from serkit.trainer.room import TRAIN_ROOMS, room_bank
from serkit.trainer.splits import Split
from serkit.trainer.train import TrainOptions, stderr_log, train_run


@dataclass(frozen=True)
class Run:
    """One train_run: its split, options and folder, and the run folders whose models it learns from."""

    title: str
    split: Split
    options: TrainOptions
    out_dir: Path
    teachers: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Outcome:
    report: dict
    spec: ModelSpec
    started: float
    finished: float


def model_runs(title: str, split: Split, options: TrainOptions, out_dir: Path) -> list[Run]:
    """The runs one model needs: its teachers (seeds seed+1, ...) in out_dir/teachers/seed<N>, then itself.

    The teachers train options.teacher_epochs when set: a model learning from teachers keeps
    gaining from a longer schedule after a single model has stopped gaining (on RAVDESS, 90 epochs
    distilled from two 60-epoch teachers, see docs/experiments.md). Teachers never train in rooms: a window
    in a room is shown to them clean, and what they say of it is what the model learns to hear in the
    room (see TrainingStream).
    """
    epochs = options.teacher_epochs or options.epochs
    teacher_options = replace(
        options,
        model=options.teacher_model or options.model,
        teachers=0,
        teacher_epochs=None,
        teacher_model=None,
        epochs=epochs,
        min_epochs=min(options.min_epochs, epochs),
        augment=replace(options.augment, room=False),
    )
    teachers = [
        Run(
            f"{title}, teacher seed {seed}",
            split,
            replace(teacher_options, seed=seed),
            out_dir / "teachers" / f"seed{seed}",
        )
        for seed in range(options.seed + 1, options.seed + 1 + options.teachers)
    ]
    if teachers:
        title = f"{title}, distilled from {len(teachers)} teacher{'s' if len(teachers) > 1 else ''}"
    return [*teachers, Run(title, split, options, out_dir, tuple(t.out_dir for t in teachers))]


def _train(run: Run, labels: Sequence[str], cache_dir: Path | None, summary: dict | None, verbose: bool):  # noqa: ANN202
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()

    teachers = [keras.saving.load_model(d / "model.keras", compile=False) for d in run.teachers]
    return train_run(run.split, labels, run.options, run.out_dir, cache_dir, summary, verbose, teachers)


def _start_worker(threads: int) -> None:
    # Before TensorFlow is imported, which reads these once.
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(threads)
    # tqdm's default lock is a named POSIX semaphore, made by the first bar in each process: a worker
    # terminated by the executor (once another has exited) then leaves it behind, and the resource
    # tracker warns about it at exit. Each worker logs to its own file, so a thread lock is enough.
    with contextlib.suppress(ImportError):
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    # execute stops workers with SIGINT (as does Ctrl-C): as SystemExit rather than KeyboardInterrupt, a
    # worker caught between runs (or still receiving one) exits without printing a traceback.
    signal.signal(signal.SIGINT, _worker_stopped)


def _worker_stopped(signum: int, frame: object) -> None:
    """A worker told to stop ends quietly: the parent says which runs were stopped. Its terminal output ends
    here, since a worker stopped before its run's log took over stderr could otherwise print the pool's
    own shutdown (a queue closed under it) as a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    raise SystemExit(128 + signum)


def _train_in_worker(run: Run, labels: Sequence[str], cache_dir: Path | None, summary: dict | None):  # noqa: ANN202
    run.out_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # At the descriptor level, so TensorFlow's own messages land in the run's log too.
    with open(run.out_dir / "train.log", "w", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        result = _train(run, labels, cache_dir, summary, True)
        sys.stdout.flush()
        sys.stderr.flush()
        return result


def _warm_in_worker(
    clips: Sequence[Clip], trained: Sequence[bool], features: FeatureConfig, augment: Augment, cache_dir: Path
) -> None:
    store = ClipStore(features, cache_dir)
    for clip in clips:
        try:
            store.features(clip)
        except SerkitError:
            pass  # reported by ClipStore.load in the run that uses the clip
    compute_variants(store, [c for c, t in zip(clips, trained, strict=True) if t], augment, desc=None)


def _outcome_line(run: Run, outcome: Outcome) -> str:
    took = f"{outcome.finished - outcome.started:.0f} s"
    rep = outcome.report
    if "accuracy" not in rep:
        return f"{run.title}: done in {took}"
    return f"{run.title}: done in {took}, held-out accuracy {rep['accuracy'] * 100:.1f}%, UAR {rep['uar'] * 100:.1f}%"


def execute(
    runs: Sequence[Run],
    labels: Sequence[str],
    cache_dir: Path | None,
    summary: dict | None = None,
    jobs: int = 1,
    verbose: bool = True,
) -> dict[Path, Outcome]:
    """Train every run, each after the runs it learns from; {run folder: outcome}."""
    # A SIGTERM (systemd, timeout, kill) would end this process at once: silently, with a run folder
    # half-written and, with --jobs, the workers training on as orphans. As an exception it takes
    # the paths below, which stop the workers and name what was left incomplete.
    with _sigterm_as_exit():
        if jobs <= 1:
            return _in_turn(runs, labels, cache_dir, summary, verbose)
        return _side_by_side(runs, labels, cache_dir, summary, jobs, verbose)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) inside the block (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        # None: the previous handler was not set from Python; the default is the nearest to it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _in_turn(
    runs: Sequence[Run], labels: Sequence[str], cache_dir: Path | None, summary: dict | None, verbose: bool
) -> dict[Path, Outcome]:
    log = stderr_log(verbose)
    done: dict[Path, Outcome] = {}
    for run in runs:
        log(f"--- {run.title}")
        started = time.time()
        try:
            report, spec = _train(run, labels, cache_dir, summary, verbose)
        except SystemExit as exc:
            _say_if_terminated(exc, [run])
            raise
        done[run.out_dir] = Outcome(report, spec, started, time.time())
    return done


def _side_by_side(
    runs: Sequence[Run], labels: Sequence[str], cache_dir: Path | None, summary: dict | None, jobs: int, verbose: bool
) -> dict[Path, Outcome]:
    log = stderr_log(verbose)
    done: dict[Path, Outcome] = {}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(
        f"training {len(runs)} runs, up to {jobs} at once ({threads} thread(s) each); each logs to train.log in its folder"
    )
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(threads,))
    running: dict[Future, tuple[Run, float]] = {}
    try:
        if cache_dir is not None:
            _warm_cache(pool, runs, cache_dir, jobs, log)
        # Teachers first: the models waiting on them are what keeps the slots busy later.
        teaching = {t for run in runs for t in run.teachers}
        pending = sorted(runs, key=lambda r: r.out_dir not in teaching)
        while pending or running:
            for run in [r for r in pending if all(t in done for t in r.teachers)]:
                if len(running) >= jobs:
                    break
                pending.remove(run)
                running[pool.submit(_train_in_worker, run, labels, cache_dir, summary)] = (run, time.time())
                log(f"started {run.title} -> {run.out_dir / 'train.log'}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run, started = running.pop(future)
                try:
                    report, spec = future.result()
                except SerkitError as exc:
                    raise SerkitError(f"{run.title}: {exc} (its log: {run.out_dir / 'train.log'})") from None
                except BrokenProcessPool:
                    raise SerkitError(
                        f"the process training {run.title} died; its log: {run.out_dir / 'train.log'}"
                    ) from None
                done[run.out_dir] = Outcome(report, spec, started, time.time())
                log(f"[{len(done)}/{len(runs)}] {_outcome_line(run, done[run.out_dir])}")
    except BaseException as exc:
        # Don't wait minutes for the other runs to finish before reporting a failure. An interrupt
        # rather than a kill: the worker then stops at its next Python step and hands the executor
        # back its locks, which a killed one would leave behind. (A Ctrl-C reached them already.)
        if not isinstance(exc, KeyboardInterrupt):
            for process in active_children():  # the pool's workers: this process starts no others
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        _say_if_terminated(exc, [run for run, _ in running.values()])
        raise
    pool.shutdown()
    return done


def _say_if_terminated(exc: BaseException, training: Sequence[Run]) -> None:
    """The one line for a SIGTERM (from _terminated); Ctrl-C and errors get theirs from the CLI.

    Only for SIGTERM's code: a worker's own SystemExit, from a SIGINT sent to it alone, comes back
    through future.result() with 130.
    """
    if isinstance(exc, SystemExit) and exc.code == 128 + signal.SIGTERM:
        stopped = "; ".join(f"{run.title} ({run.out_dir}, incomplete)" for run in training) or "none"
        print(f"serkit: stopped by SIGTERM; the runs in training were stopped: {stopped}", file=sys.stderr)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _warm_cache(
    pool: ProcessPoolExecutor, runs: Sequence[Run], cache_dir: Path, jobs: int, log: Callable[[str], None]
) -> None:
    """Compute every clip's features and augmented variants once, split over the workers.

    Otherwise parallel runs on a cold cache would each compute the same clips' variants.
    """
    groups: dict[tuple, dict[Path, tuple[Clip, bool]]] = {}
    for run in runs:
        key = (run.options.features, run.options.augment)
        clips = groups.setdefault(key, {})
        for clip in run.split.val:
            clips.setdefault(clip.path, (clip, False))
        for clip in run.split.train:  # the augmented variants only for clips some run trains on
            clips[clip.path] = (clip, True)
    for (features, augment), by_path in groups.items():
        clips, trained = zip(*by_path.values(), strict=True)
        log(f"features of {len(clips)} clips and augmented variants of {sum(trained)}, in {jobs} processes")
        if augment.room:  # the rooms once, here, rather than the same bank in every worker at once
            room_bank(TRAIN_ROOMS, features.sample_rate, cache_dir)
        chunks = [(clips[i::jobs], trained[i::jobs]) for i in range(jobs)]
        for future in [pool.submit(_warm_in_worker, c, t, features, augment, cache_dir) for c, t in chunks if c]:
            future.result()


def with_teachers_time(outcomes: dict[Path, Outcome], run: Run) -> ModelSpec:
    """The run's spec with train_seconds_with_teachers (wall time from its first teacher's start), saved."""
    own = outcomes[run.out_dir]
    started = min(outcomes[d].started for d in (*run.teachers, run.out_dir))
    training = {**own.spec.info["training"], "train_seconds_with_teachers": round(own.finished - started, 1)}
    spec = own.spec._replace(info={**own.spec.info, "training": training})
    spec.save(run.out_dir / "model.json")
    return spec


def train_models(
    models: Sequence[tuple[str, Split, Path]],
    labels: Sequence[str],
    options: TrainOptions,
    cache_dir: Path | None,
    data_summary: dict | None = None,
    verbose: bool = True,
    jobs: int = 1,
) -> list[tuple[dict, ModelSpec]]:
    """Several (title, split, run folder) models with the same options, their runs sharing `jobs` processes.

    Each model is train_run, preceded by `options.teachers` teacher runs when there are any.
    Ensemble distillation (Hinton et al. 2015, "Distilling the knowledge in a neural network"): the
    teachers train on the same speakers with seeds seed+1, seed+2, ...; the model then learns from
    each training window's label mixed with the teachers' mean prediction on that very window
    (augmented and mixed up as it is). On RAVDESS one seed swings several points on unseen voices;
    over five speaker folds a model distilled from two teachers scored 1.7 points above the average
    single model, level with its teachers' mean, at one model's size and speed. The teachers never
    see a held-out speaker, so the held-out figures stay honest.
    The teachers stay in <run folder>/teachers/seed<N>, each a complete run folder. Returns each
    model's (validation report, spec), in the order given.
    """
    plans = [model_runs(title, split, options, out_dir) for title, split, out_dir in models]
    outcomes = execute([run for plan in plans for run in plan], labels, cache_dir, data_summary, jobs, verbose)
    results = []
    for plan in plans:
        run = plan[-1]
        outcome = outcomes[run.out_dir]
        # train_seconds is the model's own run; what a user waits for includes its teachers.
        results.append((outcome.report, with_teachers_time(outcomes, run) if run.teachers else outcome.spec))
    return results
