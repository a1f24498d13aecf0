from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Fixtures that train a model with TensorFlow: a test that uses one, directly or through another fixture,
# belongs to the slow tier (pytest -m slow); `pytest -m "not slow"` must stay quick and need no TensorFlow.
TRAINING_FIXTURES = frozenset({"run_dir", "refit_dir"})
UNMARKED_TRAINING = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything, so every collected test is seen
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[UNMARKED_TRAINING] = [
        item.nodeid
        for item in items
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]


def shared_data_dir() -> Path:
    return Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real speech not available at {d} (set SER_DATA to the shared data folder)")
    return d


def speechlike(seconds: float = 2.0, rate: int = 16000, seed: int = 0, f0: float = 140.0) -> np.ndarray:
    """A voiced, formant-shaped, amplitude-modulated signal with pauses: exercises every filter band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 2.1 * t), 0, None) ** 0.5
    x = 0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def pcm16(x: np.ndarray) -> bytes:
    """Float samples → 16-bit PCM bytes, the exact inverse of how a 16-bit WAV is decoded (x * 32768)."""
    return (np.asarray(x, np.float64) * 32768).round().clip(-32768, 32767).astype("<i2").tobytes()


def wav_bytes(
    samples: bytes,
    *,
    rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    tag: int = 1,
    extensible: bool = False,
    extra_chunks: tuple[tuple[bytes, bytes], ...] = (),
    declared_data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file built by hand, so tests can make every odd case real corpora contain."""
    block = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_body = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt_body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    else:
        fmt_body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    for cid, body in extra_chunks:
        chunks += cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")
    size = len(samples) if declared_data_size is None else declared_data_size
    chunks += b"data" + struct.pack("<I", size) + samples
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def run_cli(*args: str, env: dict | None = None, stdin: bytes | None = None, timeout: float = 120):
    """Run the real `serkit` program in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "serkit", *args],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=timeout,
    )


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`serkit ARGS` in this process (serkit.cli.main), for error lines where a subprocess is not the point:
    the same exit status and the same bytes on stdout and stderr, without a Python start-up per case.
    Signal handlers, logging and environment changes it makes are put back."""
    import contextlib
    import io
    import logging
    import signal

    from serkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_env = dict(os.environ)
    os.environ.update(env or {})
    logger = logging.getLogger("serkit")
    saved_log = (list(logger.handlers), logger.level, logger.propagate)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.environ.clear()
        os.environ.update(saved_env)
        logger.handlers[:], logger.level, logger.propagate = saved_log
    return subprocess.CompletedProcess(list(args), code, out.getvalue().encode(), err.getvalue().encode())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0, f"expected failure, got rc=0; stderr={err!r}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def usage_error_line(proc: subprocess.CompletedProcess) -> str:
    """argparse's refusal: exit 2, no traceback; returns the closing `serkit CMD: error: ...` line."""
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def assert_error_last_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """For commands that show progress first: non-zero exit, no traceback, and one closing error line."""
    err = proc.stderr.decode()
    assert proc.returncode != 0, f"expected failure, got rc=0; stderr={err!r}"
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("serkit: error: "), last
    for n in needles:
        assert n in last, f"{n!r} not in {last!r}"
    return last


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A small RAVDESS-named corpus of synthetic speech: 8 speakers x 3 emotions x 4 takes."""
    from synth import make_ravdess_like

    return make_ravdess_like(tmp_path_factory.mktemp("synth"), range(1, 9), takes=4)


def _train_tiny(corpus: Path, tmp_path_factory: pytest.TempPathFactory, *args: str) -> tuple[Path, str]:
    """A real `serkit train` on the synthetic corpus, small enough for CI; returns (run folder, stdout)."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("run") / "r"
    cache = tmp_path_factory.mktemp("cache")
    proc = run_cli(
        "train",
        str(corpus),
        *args,
        "--batch-size",
        "8",
        "--window-s",
        "1.0",
        "--out",
        str(out),
        "--cache",
        str(cache),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return out, proc.stdout.decode()


@pytest.fixture(scope="session")
def run_dir(corpus, tmp_path_factory) -> Path:
    """A real training run through the CLI (speakers 07 and 08 held out for validation)."""
    out, stdout = _train_tiny(
        corpus, tmp_path_factory, "--val-speakers", "07,08", "--epochs", "14", "--min-epochs", "4"
    )
    assert "speaker-independent" in stdout
    return out


@pytest.fixture(scope="session")
def refit_dir(corpus, tmp_path_factory) -> Path:
    """`--folds 2 --refit --room` through the CLI: two fold models for the estimate (clean and in simulated
    rooms), then one on every speaker."""
    out, stdout = _train_tiny(corpus, tmp_path_factory, "--folds", "2", "--refit", "--epochs", "8", "--room")
    assert "every speaker held out once" in stdout
    return out
