"""Speaker-disjoint splits. A clip-level split exists only behind an explicit flag."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from serkit.edge.errors import SerkitError
from serkit.trainer.corpora import Clip


@dataclass(frozen=True)
class Split:
    train: list[Clip]
    val: list[Clip]
    test: list[Clip]
    protocol: dict


def resolve_speakers(names: Sequence[str], speakers: set[str], flag: str) -> set[str]:
    """Match `01` or `ravdess:01` against the corpus-qualified speaker ids."""
    out = set()
    for n in names:
        hits = {s for s in speakers if s == n or s.split(":", 1)[-1] == n}
        if not hits:
            raise SerkitError(
                f"{flag}: speaker {n!r} is not in the data (speakers: {', '.join(sorted(speakers)[:12])}...)"
            )
        out |= hits
    return out


def parse_speakers(value: str | None) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()] if value else []


def speaker_split(
    clips: Sequence[Clip],
    val_speakers: Sequence[str] = (),
    test_speakers: Sequence[str] = (),
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Named validation/test speakers; without names, a seeded ~val_fraction of speakers for validation."""
    speakers = {c.speaker for c in clips}
    if len(speakers) < 2:
        raise SerkitError(
            f"a speaker-independent split needs at least 2 speakers, the data has {len(speakers)} "
            "(give speakers in a manifest or per-speaker folders, or use --clip-split for a speaker-dependent estimate)"
        )
    test = resolve_speakers(test_speakers, speakers, "--test-speakers")
    val = resolve_speakers(val_speakers, speakers, "--val-speakers")
    if val & test:
        raise SerkitError(f"--val-speakers and --test-speakers overlap: {', '.join(sorted(val & test))}")
    if not val:
        rest = sorted(speakers - test)
        rng = random.Random(seed)
        rng.shuffle(rest)
        val = set(rest[: max(1, round(val_fraction * len(rest)))])
    train = speakers - val - test
    if not train:
        raise SerkitError("no speakers left for training after taking the validation and test speakers")
    return Split(
        [c for c in clips if c.speaker in train],
        [c for c in clips if c.speaker in val],
        [c for c in clips if c.speaker in test],
        {
            "kind": "speaker-independent",
            "role": "validation",
            "train_speakers": sorted(train),
            "val_speakers": sorted(val),
            "test_speakers": sorted(test),
            "held_out_speakers": sorted(val | test),
        },
    )


def speaker_folds(clips: Sequence[Clip], k: int, seed: int = 0) -> list[Split]:
    """k folds, each holding out a disjoint group of speakers (balanced by clip count); val = the held-out fold."""
    counts = Counter(c.speaker for c in clips)
    if k < 2 or k > len(counts):
        raise SerkitError(f"--folds must be between 2 and the number of speakers ({len(counts)}), got {k}")
    order = sorted(counts, key=lambda s: (-counts[s], s))
    rng = random.Random(seed)
    rng.shuffle(order)
    order.sort(key=lambda s: -counts[s])  # greedy: biggest speaker into the lightest fold
    groups: list[set[str]] = [set() for _ in range(k)]
    load = [0] * k
    for s in order:
        i = load.index(min(load))
        groups[i].add(s)
        load[i] += counts[s]
    folds = []
    for i, held in enumerate(groups):
        train = set(counts) - held
        folds.append(
            Split(
                [c for c in clips if c.speaker in train],
                [c for c in clips if c.speaker in held],
                [],
                {
                    "kind": "k-fold",
                    "role": "held-out fold",
                    "fold": i + 1,
                    "folds": k,
                    "train_speakers": sorted(train),
                    "val_speakers": sorted(held),
                    "held_out_speakers": sorted(held),
                },
            )
        )
    return folds


def every_speaker(clips: Sequence[Clip], estimate: str) -> Split:
    """All clips for training, none held out: the final model of a --refit, whose accuracy is `estimate`."""
    every = sorted({c.speaker for c in clips})
    protocol = {
        "kind": "all-speakers",
        "role": "final",
        "train_speakers": every,
        "val_speakers": [],
        "test_speakers": [],
        "held_out_speakers": [],
        "estimate": estimate,
    }
    return Split(list(clips), [], [], protocol)


def clip_split(clips: Sequence[Clip], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Random split by clip: speakers appear on both sides. Only behind --clip-split; every number is labelled."""
    idx = list(range(len(clips)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, round(val_fraction * len(clips)))
    val = [clips[i] for i in idx[:n_val]]
    train = [clips[i] for i in idx[n_val:]]
    return Split(train, val, [], {"kind": "speaker-dependent", "role": "validation", "held_out_speakers": []})
