"""Start-up: `serkit predict` on one clip and `serkit run --broker none` on one clip, against importing numpy.

Run: python benchmarks/bench_startup.py [--repeats 30]
Each command is the installed CLI in a fresh interpreter (python -m serkit, with the BLAS thread setting the
CLI applies itself), timed wall-clock from its start:
- predict: to its line for the clip (its whole job);
- run: to its start line ("listening: ...", logged at the default level as a service logs it), once the model is
  loaded and the source open: its start-up; and, from the same process, to its first state on stdout (--raw, so
  that it is the first window's: 3 s of audio read, its features and one inference on top of the start-up).
The reference is `python -c "import numpy"`, from its start to a line printed once numpy is imported. Each
round runs the reference and the commands back to back, so a slow spell of a shared machine slows all of them:
the ratio reported is the median of the rounds' ratios, with its quartiles.
Goal: predict and run's start-up <= 1.3x the reference.
Every command runs as an installed package does, from bytecode (pip compiles it at install time): the children
may write __pycache__ even where PYTHONDONTWRITEBYTECODE is set, and the first of the repeats writes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "edge" / "samples" / "01-angry-espeak.wav"
RUN = [
    sys.executable, "-m", "serkit", "run", "--source", f"file:{CLIP}", "--pace", "fast", "--broker", "none", "--raw",
]  # fmt: skip
# Each command with the lines it is timed to, in the order they come: (what, stream, text the line holds).
COMMANDS = {
    "python -c 'import numpy' (reference)": (
        [sys.executable, "-c", "import numpy; print('imported', flush=True)"],
        [("imported", "stdout", "")],
    ),
    "serkit predict CLIP": ([sys.executable, "-m", "serkit", "predict", str(CLIP)], [("its result", "stdout", "")]),
    "serkit run --source file:CLIP --pace fast --broker none --raw": (
        RUN,
        [("start-up (its start line)", "stderr", "listening:"), ("its first state", "stdout", "")],
    ),
}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}"


def marks_s(cmd: list[str], marks: list[tuple[str, str, str]], cwd: str) -> list[float]:
    """Seconds from starting the command to each of its marked lines (stderr's lines before a mark are skipped)."""
    t0 = time.perf_counter()
    uses_stderr = any(stream == "stderr" for _, stream, _ in marks)
    err = subprocess.PIPE if uses_stderr else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=ENV, text=True)
    took = []
    for _, stream, text in marks:
        pipe = proc.stdout if stream == "stdout" else proc.stderr
        while (line := pipe.readline()) and text not in line:
            pass
        took.append(time.perf_counter() - t0)
    proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    times = {(name, what): [] for name, (_, marks) in COMMANDS.items() for what, _, _ in marks}
    # An empty folder to run in: the current directory comes first on the module path of `python -c` and `-m`.
    with tempfile.TemporaryDirectory() as empty:
        for _ in range(a.repeats):
            for name, (cmd, marks) in COMMANDS.items():
                for (what, _, _), seconds in zip(marks, marks_s(cmd, marks, empty), strict=True):
                    times[name, what].append(seconds)
    ref = next(iter(times.values()))
    for (name, what), seconds in times.items():
        ratios = [s / r for s, r in zip(seconds, ref, strict=True)]
        print(
            f"{name}, to {what}: best {min(seconds) * 1000:.0f} ms; {statistics.median(ratios):.2f}x the reference "
            f"(median of the rounds' ratios, quartiles {_quartiles(ratios)})"
        )
    purelib = subprocess.check_output(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    editable = any(p.name.startswith("__editable__") for p in Path(purelib).iterdir())
    print(
        f"goal: serkit predict and the start-up of serkit run <= 1.30x ({'editable' if editable else 'regular'} install)"
    )


if __name__ == "__main__":
    main()
