"""Feature extraction speed: numpy one-shot, numpy incremental (10 ms pushes), python_speech_features.

Run: python benchmarks/bench_features.py [WAV] [--delta-order N]
All three run in the same process on the same clip, interleaved, best of several
repeats of CPU time, so the ratios hold on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The thread setting the CLI applies to the edge commands (serkit.edge.pin_numeric_threads), before numpy.
from serkit.edge import pin_numeric_threads  # noqa: E402

pin_numeric_threads()

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from serkit.edge.audio import read_wav  # noqa: E402
from serkit.edge.features import FeatureConfig, FeatureExtractor  # noqa: E402


def _default_clip() -> np.ndarray:
    data = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
    clips = sorted((data / "ravdess-48k-sample").glob("*/*.wav"))
    if clips:
        print(f"clip: {clips[0]} (resampled to 16 kHz)")
        return read_wav(clips[0], 16000)[0]
    print("clip: synthetic 3.5 s chirp + noise (no ../shared/data found)")
    t = np.arange(int(3.5 * 16000)) / 16000
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _best(fn: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wav", nargs="?")
    ap.add_argument("--delta-order", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    try:
        import python_speech_features as psf
    except ImportError:
        sys.exit("python_speech_features is the reference: pip install -e '.[dev]'")

    signal = read_wav(args.wav, 16000)[0] if args.wav else _default_clip()
    x = signal.astype(np.float64)
    seconds = len(x) / 16000
    config = FeatureConfig(delta_order=args.delta_order)
    ex = FeatureExtractor(config)
    hop = 160  # 10 ms pushes, as a microphone callback would deliver

    def one_shot() -> None:
        ex.extract(x)

    def incremental() -> None:
        for i in range(0, len(x), hop):
            ex.push(x[i : i + hop])
        ex.flush()

    def reference() -> None:
        feat = psf.mfcc(x, 16000, winfunc=np.hamming, nfft=512)
        if args.delta_order >= 1:
            d = psf.delta(feat, config.delta_width)
            if args.delta_order == 2:
                psf.delta(d, config.delta_width)

    times = {"numpy one-shot": [], "numpy incremental (10 ms pushes)": [], "python_speech_features": []}
    fns = dict(zip(times, (one_shot, incremental, reference), strict=False))
    for _ in range(3):  # interleave rounds so drift in machine load hits all three alike
        for name, fn in fns.items():
            times[name].append(_best(fn, max(1, args.repeats // 3)))
    best = {k: min(v) for k, v in times.items()}
    ref = best["python_speech_features"]
    print(f"audio: {seconds:.2f} s, delta_order={args.delta_order}, CPU time, best of {args.repeats}")
    print(f"{'':36s} {'ms/s audio':>11s} {'vs psf':>8s}")
    for name, t in best.items():
        print(f"{name:36s} {t / seconds * 1e3:11.3f} {t / ref:8.2f}x")
    inc_per_100ms = best["numpy incremental (10 ms pushes)"] / seconds * 0.1 * 1e3
    print(f"incremental: {inc_per_100ms:.3f} ms CPU per 100 ms of audio (goal <= 0.5)")
    print(f"one-shot / psf: {best['numpy one-shot'] / ref:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
