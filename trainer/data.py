"""Audio and features of a corpus, cached on disk, and the augmented training stream.

Both caches are keyed by the file (path, size, mtime) and, for features, the
FeatureConfig; entries are .npy files opened memory-mapped, so memory does not
grow with the corpus. Noise and speed changes are applied to the waveform, where
a microphone or another voice would make them, but once per (clip, variant) and
cached; training then only picks a variant, crops, warps, shifts gain in c0, masks
and mixes, so an epoch costs feature reads, not feature extraction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from serkit.edge.audio import read_wav
from serkit.edge.errors import SerkitError
from serkit.edge.features import FeatureConfig, FeatureExtractor, dct_lifter_matrix, hz_to_mel, mel_points, mel_to_hz
from serkit.edge.resample import resample_poly
from serkit.edge.windows import clip_windows
from serkit.trainer.corpora import Clip
from serkit.trainer.progress import progress
from serkit.trainer.room import TRAIN_ROOMS, ClipRoom, RoomRecipe, draw, room_bank, simulate


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "serkit"


class ClipStore:
    """Per-clip audio (at the model's rate) and clean features, computed once and cached."""

    def __init__(self, config: FeatureConfig, cache_dir: Path | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self._cfg_key = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        self._extractor = FeatureExtractor(config)
        self._noise: list[np.ndarray] | None = None
        self._rooms: dict[RoomRecipe, tuple[list[np.ndarray], np.ndarray]] = {}

    def _key(self, path: Path, extra: str = "") -> str:
        st = path.stat()
        return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}{extra}".encode()).hexdigest()

    def _cached(self, kind: str, path: Path, compute: callable, extra: str = "") -> np.ndarray:
        """compute() once per (kind, file, extra), kept as .npy and read memory-mapped."""
        if self.cache_dir is None:
            return compute()
        key = self._key(path, extra)
        target = self.cache_dir / kind / key[:2] / f"{key}.npy"
        if target.exists():
            try:
                return np.load(target, mmap_mode="r")
            except (ValueError, OSError):
                target.unlink(missing_ok=True)  # a torn write from an interrupted run: recompute
        arr = compute()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, arr)
        os.replace(tmp, target)
        return np.load(target, mmap_mode="r")

    def audio(self, clip: Clip) -> np.ndarray:
        rate = self.config.sample_rate
        return self._cached(f"audio-{rate}", clip.path, lambda: read_wav(clip.path, rate)[0])

    def features(self, clip: Clip) -> np.ndarray:
        return self._cached(
            f"features-{self._cfg_key}", clip.path, lambda: self._extractor.extract(np.asarray(self.audio(clip)))
        )

    def noisy_features(self, clip: Clip, variant: int, snr_db: tuple[float, float]) -> np.ndarray:
        """Features of the clip mixed with noise; colour, offset and SNR are seeded by (file, variant)."""

        def compute() -> np.ndarray:
            rng = np.random.default_rng([variant, *clip.path.name.encode()])
            x = np.asarray(self.audio(clip), dtype=np.float64)
            rms = np.sqrt(np.mean(x**2)) + 1e-9
            src = self._noise_bank()[int(rng.integers(3))]
            at = int(rng.integers(0, max(1, len(src) - len(x))))
            noise = np.resize(src[at : at + len(x)], len(x))
            snr = rng.uniform(*snr_db)
            return self._extractor.extract(x + noise * (rms / 10 ** (snr / 20)))

        kind = f"features-{self._cfg_key}-noise{variant}-{snr_db[0]:g}-{snr_db[1]:g}"
        return self._cached(kind, clip.path, compute)

    def speed_features(self, clip: Clip, factor: float) -> np.ndarray:
        """Features of the clip played `factor` times faster (pitch and formants move with it)."""

        def compute() -> np.ndarray:
            return self._extractor.extract(change_speed(np.asarray(self.audio(clip)), factor))

        return self._cached(f"features-{self._cfg_key}-speed{factor:g}", clip.path, compute)

    def room_bank(self, recipe: RoomRecipe) -> tuple[list[np.ndarray], np.ndarray]:
        """The recipe's impulse responses and RT60s, computed once per cache."""
        if recipe not in self._rooms:
            self._rooms[recipe] = room_bank(recipe, self.config.sample_rate, self.cache_dir)
        return self._rooms[recipe]

    def room_condition(self, clip: Clip, recipe: RoomRecipe, variant: int = 0) -> ClipRoom:
        return draw(recipe, self.room_bank(recipe)[1], clip.path.name, variant)

    def room_features(
        self, clip: Clip, recipe: RoomRecipe, variant: int = 0, babble: Sequence[Clip] = (), speed: float = 1.0
    ) -> np.ndarray:
        """Features of the clip (played `speed` times faster) in its drawn room of the recipe (see trainer.room);
        babble: other talkers' clips."""

        def compute() -> np.ndarray:
            voices = [np.asarray(self.audio(c)) for c in babble]
            x = np.asarray(self.audio(clip))
            if speed != 1.0:
                x = change_speed(x, speed)
            y, _ = simulate(x, self.room_bank(recipe), recipe, self.config.sample_rate, clip.path.name, variant, voices)
            return self._extractor.extract(y)

        talkers = "".join(f"|{c.path.resolve()}" for c in babble)
        kind = f"features-{self._cfg_key}-room{recipe.key(self.config.sample_rate)}-{variant}" + (
            f"-speed{speed:g}" if speed != 1.0 else ""
        )
        return self._cached(kind, clip.path, compute, talkers)

    def _noise_bank(self) -> list[np.ndarray]:
        if self._noise is None:
            self._noise = noise_bank(30.0, self.config.sample_rate, np.random.default_rng(1234))
        return self._noise

    def load(self, clips: Sequence[Clip], desc: str = "features") -> tuple[list[Clip], list[np.ndarray]]:
        """Features of every readable clip; unreadable ones are skipped, counted and listed on stderr."""
        ok, feats, bad = [], [], []
        for clip in progress(clips, desc):
            try:
                feats.append(self.features(clip))
                ok.append(clip)
            except SerkitError as exc:
                bad.append(str(exc))
        if bad:
            shown = "\n  ".join(bad[:10]) + (f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else "")
            print(f"warning: skipped {len(bad)} unreadable clip(s) of {len(clips)}:\n  {shown}", file=sys.stderr)
        if not ok:
            raise SerkitError(f"none of the {len(clips)} clips could be read")
        return ok, feats


def normalisation_stats(feats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of the (training speakers') clips."""
    n = sum(len(f) for f in feats)
    total = sum(np.asarray(f, dtype=np.float64).sum(axis=0) for f in feats)
    mean = total / n
    sq = sum(((np.asarray(f, dtype=np.float64) - mean) ** 2).sum(axis=0) for f in feats)
    std = np.sqrt(sq / n)
    return mean, np.maximum(std, 1e-6)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """The waveform played `factor` times faster: 1/factor as long, every frequency times factor.

    Resampling rather than time-stretching on purpose: pitch and vocal-tract resonances
    move together, as between two speakers, which is the variation a model trained on
    a few voices lacks most (Ko et al., "Audio augmentation for speech recognition", 2015).
    """
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor {factor} outside 0.5..2")
    up = 1000
    down = round(up * factor)
    g = math.gcd(up, down)
    return resample_poly(np.asarray(x, dtype=np.float64), up // g, down // g)


def warp_matrix(config: FeatureConfig, alpha: float) -> np.ndarray:
    """(numcep, numcep) map moving a frame's spectral envelope to alpha times its frequencies.

    Vocal tract length perturbation (Jaitly & Hinton 2013) done on finished features:
    cepstra back to log mel energies (the DCT/lifter is inverted, least squares when
    numcep < nfilt), each band read from the band centre at f/alpha, forward again.
    Formants move while pitch and tempo stay, unlike a speed change. Column 0 is
    meaningless: c0 (loudness) is kept as it was by the caller.
    """
    c = config
    dct = dct_lifter_matrix(c)  # (nfilt, numcep)
    mels = mel_points(c)[1:-1]  # the band centres
    centres = mel_to_hz(mels)
    source = hz_to_mel(np.clip(centres / alpha, centres[0], centres[-1]))
    pos = np.interp(source, mels, np.arange(c.nfilt, dtype=np.float64))
    interp = np.zeros((c.nfilt, c.nfilt))
    lo = np.minimum(np.floor(pos).astype(int), c.nfilt - 1)
    hi = np.minimum(lo + 1, c.nfilt - 1)
    frac = pos - lo
    np.add.at(interp, (lo, np.arange(c.nfilt)), 1 - frac)
    np.add.at(interp, (hi, np.arange(c.nfilt)), frac)
    no_c0 = np.eye(c.numcep)
    no_c0[0, 0] = 0.0
    return (no_c0 @ np.linalg.pinv(dct) @ interp @ dct).astype(np.float32)


@dataclass(frozen=True)
class Augment:
    """Training-time variation, each kind switchable.

    Noise and speed changes are made to the waveform once per (clip, variant) and
    cached, so an epoch costs feature reads, not feature extraction; a window comes
    from a speed-changed copy with probability speed_prob, else from the clean clip
    or one of its noisy copies. Warp (a vocal-tract-length change, see warp_matrix)
    and gain are exact and cheap in the feature domain; shift is the random crop.
    Mixup blends each window and its label with another window of the batch (weight
    ~ Beta(alpha, alpha), the own window keeping the larger share), which keeps the
    model from betting everything on cues of the few training voices.
    """

    noise: bool = True
    gain: bool = True
    shift: bool = True
    specaugment: bool = True
    speed: bool = True
    noise_variants: int = 3
    snr_db: tuple[float, float] = (5.0, 30.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    time_masks: int = 2
    time_mask_frames: int = 15
    freq_masks: int = 1
    freq_mask_bins: int = 3
    speeds: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)
    speed_prob: float = 0.5
    warp: bool = True
    warp_range: tuple[float, float] = (0.9, 1.1)
    warp_prob: float = 0.5
    mixup: bool = True
    mixup_alpha: float = 0.4
    room: bool = False
    room_variants: int = 4
    room_prob: float = 0.3

    def room_speed(self, variant: int) -> float:
        """The speed of room variant `variant` (1, 2, ...): the speed changes in turn, so that room windows
        vary between voices as much as the others do."""
        return self.speeds[(variant - 1) % len(self.speeds)] if self.speed and self.speeds else 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def noise_bank(seconds: float, rate: int, rng: np.random.Generator) -> list[np.ndarray]:
    """White, pink and brown noise (unit RMS), cut into random crops later: microphones and rooms rarely hiss white."""
    n = 1 << int(np.ceil(np.log2(seconds * rate)))
    bank = []
    for slope in (0.0, 0.5, 1.0):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / f**slope, n)
        bank.append((x / np.sqrt(np.mean(x**2))).astype(np.float32))
    return bank


def compute_variants(
    store: ClipStore, clips: Sequence[Clip], augment: Augment, desc: str | None = "augmented variants"
) -> None:
    """Compute (or find cached) every noisy and speed-changed variant of the clips (desc None: no progress bar).

    Unreadable clips are passed over here: ClipStore.load reports them where the clips are used.
    """
    jobs = []
    for c in clips:
        if augment.noise:
            jobs += [partial(store.noisy_features, c, v, augment.snr_db) for v in range(1, augment.noise_variants + 1)]
        if augment.speed:
            jobs += [partial(store.speed_features, c, f) for f in augment.speeds]
        if augment.room:
            jobs += [
                partial(store.room_features, c, TRAIN_ROOMS, v, speed=augment.room_speed(v))
                for v in range(1, augment.room_variants + 1)
            ]
    for job in progress(jobs, desc) if desc else jobs:
        try:
            job()
        except SerkitError:
            pass


class TrainingStream:
    """Endless batches of (windows, label distributions, weights) from random crops of the training clips.

    With teacher_view, (windows, teachers' windows, label distributions, weights). The teachers see what the
    model sees (the same crop, speed, noise, warp, gain and masks: distillation gains from consistent views,
    Beyer et al. 2022), except in a room: there they see the same window of the clip's clean copy, since
    teachers who learnt without rooms say better from it what the reverberant window holds (teacher-student
    learning on parallel data: Watanabe et al. 2017, Mošner et al. 2019).
    """

    def __init__(
        self,
        store: ClipStore,
        clips: Sequence[Clip],
        labels: Sequence[int],
        mean: np.ndarray,
        std: np.ndarray,
        frames_per_window: int,
        batch_size: int,
        class_weights: np.ndarray,
        augment: Augment,
        seed: int,
        teacher_view: bool = False,
    ) -> None:
        self.store, self.clips, self.labels = store, list(clips), np.asarray(labels)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.T = frames_per_window
        self.batch_size = batch_size
        self.class_weights = class_weights.astype(np.float32)
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.teacher_view = teacher_view
        c = store.config
        # A gain of g dB adds g/10*ln(10) to log energy; without append_energy c0 is the orthonormal DCT's
        # first row over log filterbank energies, which moves by that times sqrt(nfilt).
        self.c0_per_db = np.log(10) / 10 * (1.0 if c.append_energy else np.sqrt(c.nfilt))
        self._warps = [warp_matrix(c, alpha) for alpha in np.linspace(*augment.warp_range, 21)] if augment.warp else []

    def _crop(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (T, F) features of one augmented crop of training clip i, and the teachers' view of it."""
        a, rng, T = self.augment, self.rng, self.T
        feats, clean = self._variant(self.clips[i])
        views = [feats] if clean is None else [feats, clean]
        if len(feats) > T:
            start = int(rng.integers(0, len(feats) - T + 1)) if a.shift else (len(feats) - T) // 2
            views = [v[start : start + T] for v in views]
        views = [np.array(v, dtype=np.float32) for v in views]
        if self._warps and rng.random() < a.warp_prob:
            m = self._warps[int(rng.integers(len(self._warps)))]
            views = [_warped(v, m) for v in views]
        if a.gain:
            shift = self.c0_per_db * rng.uniform(*a.gain_db)
            for v in views:
                v[:, 0] += shift
        windows = [clip_windows((v - self.mean) / self.std, T, T)[0] for v in views]
        if a.specaugment:
            for _ in range(a.time_masks):
                w = int(rng.integers(0, a.time_mask_frames + 1))
                s = int(rng.integers(0, max(1, T - w)))
                for window in windows:
                    window[s : s + w] = 0.0
            for _ in range(a.freq_masks):
                w = int(rng.integers(0, a.freq_mask_bins + 1))
                s = int(rng.integers(0, max(1, windows[0].shape[1] - w)))
                for window in windows:
                    window[:, s : s + w] = 0.0
        return windows[0], windows[-1]

    def _variant(self, clip: Clip) -> tuple[np.ndarray, np.ndarray | None]:
        """Features of a randomly chosen speed-changed, noisy, room or clean copy of the clip, and for a room
        copy the clean copy of the same speed (frame for frame), else None."""
        a, rng = self.augment, self.rng
        if a.room and rng.random() < a.room_prob:
            v = int(rng.integers(1, a.room_variants + 1))
            speed = a.room_speed(v)
            clean = self.store.speed_features(clip, speed) if speed != 1.0 else self.store.features(clip)
            return self.store.room_features(clip, TRAIN_ROOMS, v, speed=speed), clean
        if a.speed and a.speeds and rng.random() < a.speed_prob:
            return self.store.speed_features(clip, a.speeds[int(rng.integers(len(a.speeds)))]), None
        variant = int(rng.integers(0, a.noise_variants + 1)) if a.noise else 0
        return (self.store.noisy_features(clip, variant, a.snr_db) if variant else self.store.features(clip)), None

    def prepare(self) -> None:
        """Compute (or find cached) every noisy and speed-changed variant up front, with a progress bar."""
        compute_variants(self.store, self.clips, self.augment)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(windows (B, T, F), label distributions (B, classes), sample weights (B,)), float32."""
        n = len(self.clips)
        one_hot = np.eye(len(self.class_weights), dtype=np.float32)
        while True:
            order = self.rng.permutation(n)
            for i in range(0, n - self.batch_size + 1 if n >= self.batch_size else 1, self.batch_size):
                idx = order[i : i + self.batch_size]
                pairs = [self._crop(j) for j in idx]
                views = [np.stack([p[0] for p in pairs])]
                if self.teacher_view:  # the teachers' windows, only when there are teachers to see them
                    views.append(np.stack([p[1] for p in pairs]))
                batch = (*views, one_hot[self.labels[idx]], self.class_weights[self.labels[idx]])
                yield self._mix(*batch) if self.augment.mixup and len(idx) > 1 else batch

    def _mix(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        alpha = self.augment.mixup_alpha
        n = len(arrays[0])
        lam = self.rng.beta(alpha, alpha, size=n).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)
        other = self.rng.permutation(n)

        def blend(a: np.ndarray) -> np.ndarray:
            shape = (-1,) + (1,) * (a.ndim - 1)
            return lam.reshape(shape) * a + (1 - lam).reshape(shape) * a[other]

        return tuple(blend(a) for a in arrays)

    def steps_per_epoch(self) -> int:
        return max(1, len(self.clips) // self.batch_size)


def class_weights(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the training clips."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return w


def _warped(feats: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Frames through a warp_matrix, keeping c0 (loudness) as it was."""
    out = feats @ matrix
    out[:, 0] = feats[:, 0]
    return out
