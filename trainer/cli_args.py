"""Option groups shared by the workstation commands (train, evaluate, predict, convert).

Below the CLI, so that each stage's commands can build their parsers without importing `serkit.cli`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # corpora (csv, dataclasses) and pathlib load where used, not to build `serkit predict`
    from pathlib import Path

    from serkit.trainer.corpora import Clip

ROOM_HELP = (
    "also score the clips in simulated living rooms (reverberation 0.3-0.7 s, talker 1-3 m away, pink noise and "
    "babble at 5-20 dB SNR; the same rooms for every model)"
)
PRESET_HELP = (
    "labels to keep/merge: 'all' (default), 'common6', 'neutral,happy,sad', 'calm=neutral' (combine with commas)"
)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--dataset and --labels: how the corpus folders are read and which labels are kept."""
    from serkit.trainer.corpora import DATASETS

    p.add_argument("--dataset", default="auto", choices=DATASETS, help="naming scheme (default: detect per folder)")
    p.add_argument("--labels", help=PRESET_HELP)


def add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="feature cache folder (default: ~/.cache/serkit)")
    p.add_argument("--no-cache", action="store_true", help="compute features without the disk cache")


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The feature cache the options name: --cache, the default folder, or none with --no-cache."""
    from pathlib import Path

    from serkit.trainer.data import default_cache_dir

    if args.no_cache:
        return None
    return Path(args.cache) if args.cache else default_cache_dir()


def load_clips(args: argparse.Namespace) -> list[Clip]:
    """The clips of args.data (folders or CSV manifests) with --dataset's naming and --labels applied."""
    from serkit.trainer import corpora

    clips = corpora.load_corpora(args.data, args.dataset)
    mapping = corpora.parse_label_map(args.labels, {c.label for c in clips})
    return corpora.apply_labels(clips, mapping)
