"""The JSON spec beside every model: what the edge needs to compute exactly what training saw."""

import json
import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Self

import numpy as np

from serkit.edge import version
from serkit.edge.errors import SerkitError
from serkit.edge.features import FeatureConfig

FORMAT = "serkit-model-spec"
FORMAT_VERSION = 1


class Quantization(NamedTuple):
    """An int8 tensor's scale and zero point."""

    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point}


class ModelSpec(NamedTuple):
    """Everything the agent needs beside the model file: labels, features, normalisation, windowing.
    Immutable: `spec._replace(threshold=...)` makes a changed copy."""

    labels: tuple[str, ...]
    features: FeatureConfig
    mean: np.ndarray
    std: np.ndarray
    frames_per_window: int
    hop_s: float
    threshold: float = 0.0
    input_quant: Quantization | None = None
    output_quant: Quantization | None = None
    model_file: str | None = None
    # Informational sections: training protocol, data summary, metrics, parity, op audit.
    info: Mapping[str, Any] = MappingProxyType({})  # read-only: a changed spec gets a new dict

    @property
    def window_s(self) -> float:
        f = self.features
        return (self.frames_per_window - 1) * f.winstep + f.winlen

    @property
    def hop_frames(self) -> int:
        return self.features.frames(self.hop_s)

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "serkit_version": version(),
            "labels": list(self.labels),
            "features": self.features.to_dict(),
            "normalization": {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]},
            "frames_per_window": self.frames_per_window,
            "window_s": round(self.window_s, 6),
            "hop_s": self.hop_s,
            "threshold": self.threshold,
            "quantization": None
            if self.input_quant is None
            else {
                "input": self.input_quant.to_dict(),
                "output": self.output_quant.to_dict() if self.output_quant else None,
            },
            "model_file": self.model_file,
        }
        d.update(self.info)
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w") as f:
            f.write(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> Self:
        if not isinstance(d, dict):
            raise SerkitError(f"{where}: expected a JSON object")
        if d.get("format") != FORMAT:
            raise SerkitError(f"{where}: not a serkit model spec (format is {d.get('format')!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise SerkitError(
                f"{where}: spec format_version {version!r} is newer than this serkit reads ({FORMAT_VERSION}); "
                "upgrade serkit on this device"
            )
        labels = d.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise SerkitError(f"{where}: labels must be a non-empty list of names")
        if len(set(labels)) != len(labels):
            raise SerkitError(f"{where}: labels contain duplicates")
        features = FeatureConfig.from_dict(d.get("features"), where=f"{where}: features")
        norm = d.get("normalization")
        if not isinstance(norm, dict):
            raise SerkitError(f"{where}: normalization must hold mean and std lists")
        mean, std = (
            _vector(norm.get(k), features.num_features, f"{where}: normalization.{k}") for k in ("mean", "std")
        )
        if (std <= 0).any():
            raise SerkitError(f"{where}: normalization.std must be positive")
        fpw = d.get("frames_per_window")
        if not isinstance(fpw, int) or isinstance(fpw, bool) or not 1 <= fpw <= 10000:
            raise SerkitError(f"{where}: frames_per_window must be an integer in 1..10000, got {fpw!r}")
        hop = d.get("hop_s")
        if not isinstance(hop, (int, float)) or isinstance(hop, bool) or not 0 < hop <= 60:
            raise SerkitError(f"{where}: hop_s must be a number of seconds in (0, 60], got {hop!r}")
        thr = d.get("threshold", 0.0)
        if not isinstance(thr, (int, float)) or not 0 <= thr <= 1:
            raise SerkitError(f"{where}: threshold must be in [0, 1], got {thr!r}")
        q = d.get("quantization")
        iq = oq = None
        if q is not None:
            if not isinstance(q, dict):
                raise SerkitError(f"{where}: quantization must be an object or null")
            iq = _quant(q.get("input"), f"{where}: quantization.input")
            oq = _quant(q.get("output"), f"{where}: quantization.output")
        known = {
            "format",
            "format_version",
            "serkit_version",
            "labels",
            "features",
            "normalization",
            "frames_per_window",
            "window_s",
            "hop_s",
            "threshold",
            "quantization",
            "model_file",
        }
        info = {k: v for k, v in d.items() if k not in known}
        model_file = d.get("model_file")
        return cls(tuple(labels), features, mean, std, fpw, float(hop), float(thr), iq, oq, model_file, info)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        from serkit.edge.files import read_json_object

        missing = "model spec not found (every model needs its .json beside it)"
        return cls.from_dict(read_json_object(path, "model spec", missing), where=os.fspath(path))


def _vector(v: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != n:
        raise SerkitError(f"{where} must be a list of {n} numbers (one per feature)")
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise SerkitError(f"{where} must contain only numbers") from None
    if not np.isfinite(arr).all():
        raise SerkitError(f"{where} contains NaN/inf")
    return arr


def _quant(v: Any, where: str) -> Quantization:
    if not isinstance(v, dict):
        raise SerkitError(f"{where} must hold scale and zero_point")
    scale, zp = v.get("scale"), v.get("zero_point")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise SerkitError(f"{where}.scale must be a positive number, got {scale!r}")
    if not isinstance(zp, int) or not -128 <= zp <= 127:
        raise SerkitError(f"{where}.zero_point must be an int8 value, got {zp!r}")
    return Quantization(float(scale), zp)


def spec_path_for(model_path: str | os.PathLike[str]) -> str:
    """The spec sits beside the model with the same stem: model.tflite -> model.json."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"
