"""Training recipes as data: the shipped model's recipe, flags over a recipe, a run trained again from its recipe.toml."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, _train_tiny, assert_one_line_error, cli

from serkit.cli import build_parser, parse_args

SHIPPED = ROOT / "models" / "serkit-ravdess8.recipe.toml"


def _train_args(*argv: str):
    return parse_args(build_parser("train"), ["train", *argv])


def test_the_shipped_recipe_is_the_shipped_models_options():
    args = _train_args("--recipe", str(SHIPPED), "data")
    spec = json.loads((ROOT / "models" / "serkit-ravdess8.json").read_text())
    options = spec["training"]["options"]
    assert (args.folds, args.refit, args.teachers, args.teacher_epochs) == (5, True, 2, 60)
    assert (args.epochs, args.batch_size, args.average_epochs, args.seed) == (
        options["epochs"],
        options["batch_size"],
        options["average_epochs"],
        options["seed"],
    )
    assert (args.window_s, args.hop_s, args.units) == (
        options["window_s"],
        options["hop_s"],
        options["model"]["rnn_units"],
    )
    assert (list(args.conv_filters), args.separable) == (
        options["model"]["conv_filters"],
        options["model"]["separable"],
    )
    assert list(args.teacher_conv_filters) == options["teacher_model"]["conv_filters"]
    assert all(getattr(args, name) is value for name, value in options["augment"].items() if name in vars(args))
    assert (args.train_rooms, args.room_share) == (options["augment"]["room"], options["augment"]["room_prob"])


def test_a_runs_recipe_text_reads_back_as_the_same_options(tmp_path):
    from serkit.trainer.recipe import recipe_text

    args = _train_args("--recipe", str(SHIPPED), "data", "--conv-filters", "32,48", "--no-warp")
    (tmp_path / "recipe.toml").write_text(recipe_text(args, args.parser))
    again = _train_args("--recipe", str(tmp_path / "recipe.toml"), "data")
    for key in ("folds", "refit", "epochs", "teachers", "teacher_epochs", "conv_filters", "warp", "seed", "units"):
        assert getattr(again, key) == getattr(args, key), key


def test_flags_given_on_the_command_line_win_over_the_recipe():
    args = _train_args("--epochs", "7", "--recipe", str(SHIPPED), "data", "--no-mixup", "--no-refit")
    assert (args.epochs, args.mixup, args.teachers, args.refit) == (7, False, 2, False)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("epochs = 0\n", "'epochs' must be >= 1, got 0"),
        ("epochs = 'many'\n", "'epochs' not a whole number"),
        ("refit = 'yes'\n", "'refit' must be true or false"),
        ("monitor = 'accuracy'\n", "'monitor' must be one of loss, uar"),
        ("rnn = 'gru'\n", "unknown key 'rnn'"),
        ("epochs = [1, 2]\n", "'epochs' must be a single value"),
        ("epochs = \n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_file_and_key(tmp_path, text, needle):
    recipe = tmp_path / "bad.recipe.toml"
    recipe.write_text(text)
    assert_one_line_error(cli("train", "--recipe", str(recipe), str(tmp_path)), "bad.recipe.toml", needle)


def test_a_missing_recipe_is_one_line(tmp_path):
    assert_one_line_error(cli("train", "--recipe", str(tmp_path / "no.toml"), str(tmp_path)), "no.toml", "no such")


@pytest.mark.slow
def test_a_run_trained_again_from_its_recipe_is_the_same_model(run_dir, corpus, tmp_path_factory):
    pytest.importorskip("tensorflow")
    import keras

    recipe = run_dir / "recipe.toml"
    text = recipe.read_text()
    assert "epochs = 14" in text and 'val-speakers = "07,08"' in text and "window-s = 1.0" in text
    again, _ = _train_tiny(corpus, tmp_path_factory, "--recipe", str(recipe))
    first, second = (json.loads((d / "model.json").read_text()) for d in (run_dir, again))
    for spec in (first, second):
        spec["training"].pop("train_seconds")
    assert first == second
    weights = [keras.saving.load_model(d / "model.keras", compile=False).get_weights() for d in (run_dir, again)]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
