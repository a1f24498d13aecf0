"""PNG plots a person would rather look at than read."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str) -> None:  # noqa: ANN001
    """The PNG, with the title also in its Title text chunk (the protocol stays readable by programs)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Title": title})
    _pyplot().close(fig)


_LINE_IN = 0.2  # inches a 9-point title line takes; figures grow by it for each extra line


def _wrapped(title: str, width_in: float, fontsize: float) -> str:
    """The title in lines that fit the figure: protocol descriptions run past 200 characters."""
    return textwrap.fill(title, max(20, int(width_in * 72 / (fontsize * 0.62))))


def training_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    _save(curves_figure(history, title), path, title)


def curves_figure(history: dict[str, list[float]], title: str):  # noqa: ANN201
    """Loss and accuracy per epoch, side by side, for training_curves."""
    plt = _pyplot()
    width = 10.0
    heading = _wrapped(title, width, 9)
    fig, (a, b) = plt.subplots(1, 2, figsize=(width, 3.8 + _LINE_IN * heading.count("\n")))
    epochs = np.arange(1, len(history["loss"]) + 1)
    validated = bool(history.get("val_loss"))  # a final run on every speaker has no validation curves
    a.plot(epochs, history["loss"], label="train (augmented crops)")
    if validated:
        a.plot(epochs, history["val_loss"], label="validation speakers (clips, averaged weights)")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(epochs, np.array(history["accuracy"]) * 100, label="train accuracy")
    if validated:
        b.plot(epochs, np.array(history["val_accuracy"]) * 100, label="val accuracy")
        b.plot(epochs, np.array(history["val_uar"]) * 100, label="val UAR")
        for ax in (a, b):
            ax.axvline(history["best_epoch"][0], color="grey", ls="--", lw=1)
    b.set_xlabel("epoch")
    b.set_ylabel("%")
    b.legend()
    fig.suptitle(heading, fontsize=9)
    return fig


def confusion_matrix_png(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> None:
    _save(confusion_figure(cm, labels, title), path, title)


def confusion_figure(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str):  # noqa: ANN201
    """Counts, shaded by the share of each true class, for confusion_matrix_png."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    width = max(4.5, 1.0 + 0.75 * len(labels))
    heading = _wrapped(title, width, 9)
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.7 * len(labels) + _LINE_IN * heading.count("\n")))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(heading, fontsize=9)
    return fig
