"""Simulated rooms: the far-field speech a Pi's microphone hears, for scoring models and for training them.

A clip becomes a room recording in three steps: convolution with the impulse response of a shoebox
room (pyroomacoustics' image-source method; wall absorption and reflection order for a target
reverberation time from Sabine's formula), noise at a drawn signal-to-noise ratio, and the result
scaled back to the clip's own RMS (a Pi's microphone gain is arbitrary; level is what the gain
augmentation covers, the room is what this measures).

Two recipes, never mixed: TEST_ROOMS is the fixed condition every model is scored in (`--room`);
TRAIN_ROOMS, the augmentation, draws other rooms, distances and noises from wider ranges, so a
room figure never rewards learning one simulator recipe. Impulse responses are computed once per
recipe as a bank (an image-source response of a 0.7 s room takes about a second) and cached; each
clip draws its room, SNR and noise from a generator seeded by the recipe's seed and the clip's
name, so a condition is the same for every model and every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from serkit.edge.errors import require_extra
from serkit.trainer.progress import progress


@dataclass(frozen=True)
class RoomRecipe:
    """How rooms, talker positions and noise are drawn; `rooms` impulse responses make the bank."""

    name: str
    seed: int
    rooms: int
    rt60_s: tuple[float, float]
    length_m: tuple[float, float]
    width_m: tuple[float, float]
    height_m: tuple[float, float]
    distance_m: tuple[float, float]
    snr_db: tuple[float, float]
    noises: tuple[str, ...]  # mixed with random shares: "pink", "white", "hum", "babble" (other clips, reversed)

    def key(self, rate: int) -> str:
        text = json.dumps({**asdict(self), "rate": rate}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


# The evaluation condition: a living room, talker 1-3 m from one microphone, pink noise and reversed
# babble of other talkers (a television, a conversation) at 5-20 dB SNR.
TEST_ROOMS = RoomRecipe(
    name="living-room test",
    seed=20240,
    rooms=48,
    rt60_s=(0.3, 0.7),
    length_m=(3.5, 7.0),
    width_m=(3.0, 5.5),
    height_m=(2.4, 3.0),
    distance_m=(1.0, 3.0),
    snr_db=(5.0, 20.0),
    noises=("pink", "babble"),
)

# The augmentation: wider rooms, reverberation, distances and SNRs; white, pink and mains-hum noise but no
# babble of real voices, and other random draws (seed) than the test.
TRAIN_ROOMS = RoomRecipe(
    name="training",
    seed=777,
    rooms=96,
    rt60_s=(0.15, 0.9),
    length_m=(2.5, 10.0),
    width_m=(2.5, 8.0),
    height_m=(2.2, 3.5),
    distance_m=(0.5, 4.0),
    snr_db=(5.0, 35.0),
    noises=("pink", "white", "hum"),
)


@dataclass(frozen=True)
class ClipRoom:
    """The drawn condition of one clip: which room of the bank, its reverberation time, the SNR, noise shares."""

    room: int
    rt60_s: float
    snr_db: float
    shares: tuple[float, ...]


def _seeded(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng([seed, *digest[:8]])


def _room_geometry(recipe: RoomRecipe, rng: np.random.Generator) -> tuple[list[float], list[float], list[float]]:
    """(room dimensions, microphone, talker): both 0.5 m from every wall, the talker at a drawn distance."""
    while True:
        dims = [float(rng.uniform(*r)) for r in (recipe.length_m, recipe.width_m, recipe.height_m)]
        mic = [float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [float(rng.uniform(0.8, 1.6))]
        distance = float(rng.uniform(*recipe.distance_m))
        angle = rng.uniform(0, 2 * np.pi)
        talker = [mic[0] + distance * np.cos(angle), mic[1] + distance * np.sin(angle), float(rng.uniform(1.1, 1.8))]
        if all(0.5 <= t <= d - 0.5 for t, d in zip(talker[:2], dims[:2], strict=True)):
            return dims, mic, talker


def impulse_response(recipe: RoomRecipe, index: int, rate: int) -> tuple[np.ndarray, float]:
    """(impulse response, target RT60) of room `index` of the recipe: the same for the same arguments."""
    require_extra("train", "pyroomacoustics")
    import pyroomacoustics as pra

    rng = _seeded(recipe.seed, "room", index)
    while True:
        dims, mic, talker = _room_geometry(recipe, rng)
        rt60 = float(rng.uniform(*recipe.rt60_s))
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # a room too small for so short a time: draw again
            continue
        room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=order)
        room.add_source(talker)
        room.add_microphone(mic)
        room.compute_rir()
        return np.asarray(room.rir[0][0], dtype=np.float32), rt60


def room_bank(recipe: RoomRecipe, rate: int, cache_dir: Path | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Every impulse response of the recipe and their RT60s, from the cache or computed (with a progress bar)."""
    target = cache_dir / "rooms" / f"{recipe.key(rate)}.npz" if cache_dir else None
    if target and target.exists():
        with np.load(target) as z:
            return [z[f"ir{i}"] for i in range(recipe.rooms)], z["rt60"]
    made = [impulse_response(recipe, i, rate) for i in progress(range(recipe.rooms), f"{recipe.name} rooms", "room")]
    irs, rt60 = [h for h, _ in made], np.array([t for _, t in made])
    if target:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, rt60=rt60, **{f"ir{i}": h for i, h in enumerate(irs)})
        os.replace(tmp, target)
    return irs, rt60


def draw(recipe: RoomRecipe, rt60: np.ndarray, name: str, variant: int = 0) -> ClipRoom:
    """The condition of one clip (by file name) and variant: deterministic for the recipe's seed."""
    rng = _seeded(recipe.seed, "clip", name, variant)
    room = int(rng.integers(len(rt60)))
    snr = float(rng.uniform(*recipe.snr_db))
    shares = rng.dirichlet(np.ones(len(recipe.noises)))
    return ClipRoom(room, float(rt60[room]), snr, tuple(float(s) for s in shares))


def simulate(
    x: np.ndarray,
    bank: tuple[list[np.ndarray], np.ndarray],
    recipe: RoomRecipe,
    rate: int,
    name: str,
    variant: int = 0,
    babble: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, ClipRoom]:
    """The clip named `name` in its drawn room of the bank (impulse responses, RT60s), and that condition."""
    irs, rt60 = bank
    condition = draw(recipe, rt60, name, variant)
    rng = _seeded(recipe.seed, "noise", name, variant)
    return in_room(x, irs[condition.room], condition, recipe, rate, rng, babble), condition


def babble_talkers(
    recipe: RoomRecipe, name: str, speaker: str, others: Sequence[tuple[str, str]], n: int = 3
) -> list[int]:
    """Indices into others ((name, speaker) pairs) of up to n recordings of other speakers whose reversed
    sum is the clip's babble: drawn by the recipe's seed and the clip's name."""
    pool = [i for i, (_, s) in enumerate(others) if s != speaker] or [i for i, (m, _) in enumerate(others) if m != name]
    if not pool:
        return []
    rng = _seeded(recipe.seed, "babble", name)
    return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]


def noise(kind: str, n: int, rate: int, rng: np.random.Generator, babble: Sequence[np.ndarray] = ()) -> np.ndarray:
    """n samples of unit-RMS noise of a kind; "babble" sums the given other recordings, each reversed."""
    if kind == "babble" and babble:
        x = np.zeros(n)
        for src in babble:
            src = np.asarray(src, dtype=np.float64)[::-1]
            at = int(rng.integers(0, max(1, len(src) - n)))
            part = np.resize(src[at : at + n], n)
            x += part / (np.sqrt(np.mean(part**2)) + 1e-9)
    elif kind == "hum":  # mains hum and its harmonics, as a fridge or a fan transformer makes
        t = np.arange(n) / rate
        base = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
        x = x + 0.3 * rng.standard_normal(n)
    else:
        slope = {"white": 0.0, "pink": 0.5, "babble": 0.5}[kind]
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / f**slope, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """The clip as the microphone hears it in the room, cut to the clip's length (the tail past its end is lost)."""
    n = len(x) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)
    return y[: len(x)]


def mix_at_snr(signal: np.ndarray, noise_: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that their power ratio is snr_db."""
    p_sig = np.mean(signal**2) + 1e-20
    p_noise = np.mean(noise_**2) + 1e-20
    return signal + noise_ * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))


def in_room(
    x: np.ndarray,
    ir: np.ndarray,
    condition: ClipRoom,
    recipe: RoomRecipe,
    rate: int,
    rng: np.random.Generator,
    babble: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """The clip x in the room of `ir` with the condition's noise, at x's own RMS, same length, float32."""
    x = np.asarray(x, dtype=np.float64)
    wet = reverberate(x, ir)
    mixed = np.zeros(len(x))
    for kind, share in zip(recipe.noises, condition.shares, strict=True):
        mixed += np.sqrt(share) * noise(kind, len(x), rate, rng, babble)
    y = mix_at_snr(wet, mixed, condition.snr_db)
    scale = np.sqrt(np.mean(x**2) / (np.mean(y**2) + 1e-20))
    return (y * scale).astype(np.float32)
