"""Synthetic 'emotional speech' the tests make themselves: each class has its own pitch, brightness and noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serkit.edge.audio import write_wav

# RAVDESS emotion codes, so the real loader and `--dataset auto` handle the synthetic corpus.
CLASSES = {"neutral": "01", "happy": "03", "angry": "05"}


def utterance(label: str, speaker: int, take: int, seconds: float = 1.3, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng([speaker, take, len(label)])
    t = np.arange(int(seconds * rate)) / rate
    scale = 1.0 + 0.08 * ((speaker % 5) - 2)  # each speaker has their own register
    if label == "neutral":
        f0, harmonics, vib, noise, amp = 115 * scale, 6, 0.0, 0.0, 0.25
    elif label == "happy":
        f0, harmonics, vib, noise, amp = 240 * scale, 14, 0.08, 0.0, 0.3
    else:
        f0, harmonics, vib, noise, amp = 165 * scale, 20, 0.02, 0.25, 0.6
    f = f0 * (1 + vib * np.sin(2 * np.pi * 5 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / rate
    voiced = sum(np.sin(k * phase) / k ** (1.6 if label == "neutral" else 0.9) for k in range(1, harmonics + 1))
    env = np.clip(np.sin(np.pi * t / seconds), 0, None) ** 0.3
    x = voiced / np.max(np.abs(voiced)) + noise * rng.standard_normal(t.size)
    x = amp * env * x / np.max(np.abs(x)) + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def make_ravdess_like(root: Path, speakers: range, takes: int = 4, seconds: float = 1.3) -> Path:
    for s in speakers:
        folder = root / f"Actor_{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for label, code in CLASSES.items():
            for k in range(takes):
                name = f"03-01-{code}-0{1 + k % 2}-0{1 + (k // 2) % 2}-0{1 + (k // 4) % 2}-{s:02d}.wav"
                write_wav(folder / name, utterance(label, s, k, seconds), 16000)
    return root
