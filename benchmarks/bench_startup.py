"""Start-up: `serkit predict` on one clip and `serkit run --broker none` on one clip, against importing numpy.

Run: python benchmarks/bench_startup.py [--repeats 30]
Each command is the installed CLI in a fresh interpreter (python -m serkit, with the BLAS thread setting the
CLI applies itself), timed wall-clock from its start to its first result on stdout: predict's line for the
clip; run's first state (--raw, so that it is the first window's), with its start line logged at the default
level as a service logs it. The reference is `python -c "import numpy"`, from its start to a line printed once
numpy is imported. Each round runs the reference and the commands back to back, so a slow spell of a shared
machine slows all of them: the ratio reported is the median of the rounds' ratios, with its quartiles.
Goal: both <= 1.3x the reference.
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
COMMANDS = {
    "python -c 'import numpy' (reference)": [sys.executable, "-c", "import numpy; print('imported', flush=True)"],
    "serkit predict CLIP": [sys.executable, "-m", "serkit", "predict", str(CLIP)],
    "serkit run --source file:CLIP --pace fast --broker none --raw": [
        sys.executable, "-m", "serkit", "run", "--source", f"file:{CLIP}", "--pace", "fast", "--broker", "none",
        "--raw",
    ],
}  # fmt: skip
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}-{q3:.2f}"


def first_line_s(cmd: list[str], cwd: str) -> float:
    """Seconds from starting the command to its first line on stdout (its start-up, up to the first result)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=ENV)
    proc.stdout.readline()
    took = time.perf_counter() - t0
    proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    # An empty folder to run in: the current directory comes first on the module path of `python -c` and `-m`.
    with tempfile.TemporaryDirectory() as empty:
        for _ in range(a.repeats):
            for name, cmd in COMMANDS.items():
                times[name].append(first_line_s(cmd, empty))
    ref = times[next(iter(COMMANDS))]
    for name, seconds in times.items():
        ratios = [s / r for s, r in zip(seconds, ref, strict=True)]
        print(
            f"{name}: best {min(seconds) * 1000:.0f} ms to the first result; {statistics.median(ratios):.2f}x the "
            f"reference (median of the rounds' ratios, quartiles {_quartiles(ratios)})"
        )
    purelib = subprocess.check_output(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    editable = any(p.name.startswith("__editable__") for p in Path(purelib).iterdir())
    print(f"goal: serkit predict and serkit run <= 1.30x ({'editable' if editable else 'regular'} install)")


if __name__ == "__main__":
    main()
