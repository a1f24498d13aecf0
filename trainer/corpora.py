"""Labelled emotional-speech corpora, recognised by their own file naming.

Every clip gets a label from one taxonomy and the speaker who said it, so that
every split downstream can hold speakers out. Speaker ids carry the corpus
name (`ravdess:01`), so combining corpora never merges two people.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serkit.edge.errors import SerkitError

TAXONOMY = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom")
# The six emotions every common corpus (RAVDESS, CREMA-D, TESS, EMO-DB, SAVEE) has.
COMMON6 = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
ALIASES = {
    "anger": "angry",
    "ang": "angry",
    "happiness": "happy",
    "hap": "happy",
    "joy": "happy",
    "sadness": "sad",
    "fear": "fearful",
    "fea": "fearful",
    "disgusted": "disgust",
    "dis": "disgust",
    "surprise": "surprised",
    "ps": "surprised",
    "neu": "neutral",
    "bored": "boredom",
}


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    speaker: str
    corpus: str


def canonical_label(name: str) -> str | None:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in TAXONOMY else None


# --- one recogniser per corpus: file path -> (label, speaker) or None -------------------------

_RAVDESS = re.compile(r"^03-01-(0[1-8])-0[12]-0[12]-0[12]-(\d\d)\.wav$", re.I)
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_CREMA = re.compile(r"^(1\d{3})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)\.wav$")
_CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_TESS = re.compile(r"^(OAF|YAF)_([a-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)\.wav$", re.I)
_EMODB = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z]?)\.wav$")
_EMODB_EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
_SAVEE = re.compile(r"^(?:(DC|JE|JK|KL)_)?(a|d|f|h|n|sa|su)(\d\d)\.wav$")
_SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}
_SAVEE_SPEAKERS = {"DC", "JE", "JK", "KL"}


def _ravdess(p: Path) -> tuple[str, str] | None:
    m = _RAVDESS.match(p.name)
    return (_RAVDESS_EMOTIONS[m.group(1)], f"ravdess:{m.group(2)}") if m else None


def _crema(p: Path) -> tuple[str, str] | None:
    m = _CREMA.match(p.name)
    return (_CREMA_EMOTIONS[m.group(3)], f"crema-d:{m.group(1)}") if m else None


def _tess(p: Path) -> tuple[str, str] | None:
    m = _TESS.match(p.name)
    if not m:
        return None
    return canonical_label(m.group(3)) or "", f"tess:{m.group(1).upper()}"


def _emodb(p: Path) -> tuple[str, str] | None:
    m = _EMODB.match(p.name)
    return (_EMODB_EMOTIONS[m.group(3)], f"emo-db:{m.group(1)}") if m else None


def _savee(p: Path) -> tuple[str, str] | None:
    m = _SAVEE.match(p.name)
    if not m:
        return None
    speaker = m.group(1) or p.parent.name.upper()
    if speaker not in _SAVEE_SPEAKERS:
        return None  # a bare `a01.wav` counts only inside a SAVEE speaker folder
    return _SAVEE_EMOTIONS[m.group(2)], f"savee:{speaker}"


RECOGNISERS: dict[str, Callable[[Path], tuple[str, str] | None]] = {
    "ravdess": _ravdess,
    "crema-d": _crema,
    "tess": _tess,
    "emo-db": _emodb,
    "savee": _savee,
}
DATASETS = ("auto", *RECOGNISERS, "folders", "manifest")


def _wavs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


def _from_folders(root: Path, wavs: Iterable[Path]) -> list[Clip]:
    """root/<label>/[<speaker>/]*.wav; without a speaker folder the label folder's files share one speaker."""
    clips = []
    for p in wavs:
        rel = p.relative_to(root).parts
        if len(rel) < 2:
            continue
        label = canonical_label(rel[0])
        if label is None:
            continue
        speaker = rel[1] if len(rel) >= 3 else "unknown"
        clips.append(Clip(p, label, f"{root.name}:{speaker}", "folders"))
    return clips


def load_manifest(path: Path) -> list[Clip]:
    """A CSV with a header `path,label[,speaker]`; paths relative to the CSV's folder."""
    from serkit.edge.files import read_text

    text = read_text(path, "manifest", encoding="utf-8-sig")  # a spreadsheet's BOM is not part of the header
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise SerkitError(f"{path}: manifest is empty")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header or "label" not in header:
        raise SerkitError(f"{path}: manifest header must name columns path,label[,speaker]; got {','.join(header)}")
    ip, il = header.index("path"), header.index("label")
    isp = header.index("speaker") if "speaker" in header else None
    clips = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise SerkitError(f"{path}:{n}: expected {len(header)} columns, got {len(row)}")
        label = canonical_label(row[il])
        if label is None:
            raise SerkitError(f"{path}:{n}: unknown label {row[il]!r}; known labels: {', '.join(TAXONOMY)}")
        clip_path = (path.parent / row[ip].strip()).resolve()
        if not clip_path.is_file():
            raise SerkitError(f"{path}:{n}: audio file {row[ip].strip()!r} not found")
        speaker = row[isp].strip() if isp is not None and row[isp].strip() else "unknown"
        clips.append(Clip(clip_path, label, f"{path.stem}:{speaker}", "manifest"))
    if not clips:
        raise SerkitError(f"{path}: manifest lists no clips")
    return clips


def detect(root: Path, wavs: Sequence[Path]) -> str:
    """The naming scheme that recognises the most files under root."""
    scores = {name: sum(1 for p in wavs if rec(p)) for name, rec in RECOGNISERS.items()}
    scores["folders"] = len(_from_folders(root, wavs))
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0:
        raise SerkitError(
            f"{root}: no recognisable clips among {len(wavs)} WAV file(s); expected RAVDESS, CREMA-D, TESS, "
            "EMO-DB or SAVEE file names, a folder per label, or a CSV manifest (path,label[,speaker])"
        )
    return best


def load_corpus(source: str | Path, dataset: str = "auto") -> list[Clip]:
    """All clips of one corpus folder (or a manifest CSV)."""
    root = Path(source)
    if dataset not in DATASETS:
        raise SerkitError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if not root.exists():
        raise SerkitError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() == ".csv" and dataset in ("auto", "manifest"):
            return load_manifest(root)
        raise SerkitError(f"{root}: expected a corpus folder or a .csv manifest")
    if dataset == "manifest":
        raise SerkitError(f"{root}: --dataset manifest needs a .csv file")
    wavs = _wavs(root)
    if not wavs:
        raise SerkitError(f"{root}: contains no .wav files")
    name = detect(root, wavs) if dataset == "auto" else dataset
    if name == "folders":
        clips = _from_folders(root, wavs)
    else:
        rec = RECOGNISERS[name]
        clips = [Clip(p, *hit, name) for p in wavs if (hit := rec(p))]
    if not clips:
        raise SerkitError(f"{root}: no clip matches the {name} naming scheme")
    return clips


def load_corpora(sources: Sequence[str | Path], dataset: str = "auto") -> list[Clip]:
    clips: list[Clip] = []
    for s in sources:
        clips.extend(load_corpus(s, dataset))
    return clips


def parse_label_map(spec: str | None, present: Iterable[str]) -> dict[str, str]:
    """`--labels` → {source label: model label}.

    `a,b,c` keeps those labels; `calm=neutral` merges calm into neutral; `common6` and
    `all` are presets; entries combine: `common6,calm=neutral`. Unlisted labels are dropped.
    """
    present = sorted(set(present), key=TAXONOMY.index)
    if not spec or spec == "all":
        return {lab: lab for lab in present}
    mapping: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "common6":
            mapping.update({lab: lab for lab in COMMON6})
            continue
        if item == "all":
            mapping.update({lab: lab for lab in present})
            continue
        src, _, dst = item.partition("=")
        src_c, dst_c = canonical_label(src), canonical_label(dst or src)
        if src_c is None or dst_c is None:
            bad = src if src_c is None else dst
            raise SerkitError(f"--labels: unknown label {bad!r}; known labels: {', '.join(TAXONOMY)}")
        mapping[src_c] = dst_c
    return mapping


def apply_labels(clips: Sequence[Clip], mapping: dict[str, str]) -> list[Clip]:
    out = [Clip(c.path, mapping[c.label], c.speaker, c.corpus) for c in clips if c.label in mapping]
    if not out:
        raise SerkitError(f"--labels keeps no clips (labels present: {', '.join(sorted({c.label for c in clips}))})")
    return out


def label_indices(clips: Iterable[Clip], labels: Sequence[str]) -> np.ndarray:
    """Each clip's class index in the model's label order."""
    lookup = {lab: i for i, lab in enumerate(labels)}
    return np.array([lookup[c.label] for c in clips], dtype=np.int64)


def label_order(clips: Iterable[Clip]) -> list[str]:
    """Model classes in taxonomy order."""
    return sorted({c.label for c in clips}, key=TAXONOMY.index)


def summary(clips: Sequence[Clip]) -> dict:
    return {
        "clips": len(clips),
        "speakers": len({c.speaker for c in clips}),
        "corpora": dict(Counter(c.corpus for c in clips)),
        "per_label": dict(sorted(Counter(c.label for c in clips).items(), key=lambda kv: TAXONOMY.index(kv[0]))),
    }
