"""Wall time of `serkit train --folds 2 --refit --teachers 1` (six runs) with --jobs 1 and with --jobs N.

Run: python benchmarks/bench_train_jobs.py [CORPUS] [--epochs E] [--jobs N]
(default: ../shared/data/ravdess-16k, 6 epochs, N = the number of CPU cores; needs the [train] extra).
A first run fills the feature cache, so both timed runs read the same cached features; the
same command and seeds, one process against N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _train(corpus: Path, out: Path, cache: Path, epochs: int, jobs: int) -> float:
    cmd = [sys.executable, "-m", "serkit", "train", str(corpus), "--folds", "2", "--refit", "--teachers", "1"]
    cmd += ["--epochs", str(epochs), "--jobs", str(jobs), "--out", str(out), "--cache", str(cache)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"serkit train failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?", default=str(ROOT.parent / "shared" / "data" / "ravdess-16k"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        sys.exit(f"{corpus}: no such corpus folder (give any corpus serkit train reads)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        _train(corpus, tmp / "warm", cache, 1, args.jobs)
        seconds = {n: _train(corpus, tmp / f"jobs{n}", cache, args.epochs, n) for n in (1, args.jobs)}
        cv = {n: json.loads((tmp / f"jobs{n}" / "cv_metrics.json").read_text())["accuracy"] for n in seconds}
    print(
        f"serkit train {corpus.name} --folds 2 --refit --teachers 1 --epochs {args.epochs}: 6 runs, {os.cpu_count()} cores"
    )
    for n, s in seconds.items():
        print(f"--jobs {n}: {s:7.1f} s wall   cross-validation accuracy {cv[n] * 100:.1f}%")
    print(f"speed-up of --jobs {args.jobs} over --jobs 1: {seconds[1] / seconds[args.jobs]:.2f}x")


if __name__ == "__main__":
    main()
