"""The PNG plots: a protocol description as long as real ones stays inside the picture."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from serkit.trainer import plots  # noqa: E402

# As long as the shipped model's: the protocol and its five-fold estimate.
LONG = (
    "trained on every speaker, none held out (its accuracy estimate: accuracy 62.6% ± 4.4, UAR 62.3% ± 4.2 "
    "(mean ± std over 5 folds by speaker, every speaker held out once)) - " * 2
)
HISTORY = {"loss": [2.0, 1.5, 1.2], "accuracy": [0.2, 0.4, 0.6]}


def _inside(fig, text) -> None:  # noqa: ANN001
    fig.tight_layout()
    fig.canvas.draw()
    box, page = text.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (box, page)


def test_long_titles_are_wrapped_to_fit_the_figure():
    fig = plots.curves_figure(HISTORY, LONG)
    _inside(fig, fig._suptitle)
    fig = plots.confusion_figure([[3, 1], [0, 4]], ["calm", "angry"], LONG)
    _inside(fig, fig.axes[0].title)


def test_the_png_carries_the_whole_title(tmp_path):
    plots.training_curves(HISTORY, tmp_path / "c.png", LONG)
    plots.confusion_matrix_png([[3, 1], [0, 4]], ["calm", "angry"], tmp_path / "m.png", LONG)
    for name in ("c.png", "m.png"):
        assert Image.open(tmp_path / name).text["Title"] == LONG
