"""The trainer keeps the mean weights of its last epochs; bad epoch counts are refused up front."""

from __future__ import annotations

import numpy as np
from conftest import run_cli, usage_error_line

from serkit.trainer.train import mean_weights


def test_mean_weights_is_the_elementwise_mean_of_every_tensor():
    rng = np.random.default_rng(0)
    snapshots = [[rng.normal(size=(3, 4)), rng.normal(size=4), np.float32(k)] for k in range(5)]
    mean = mean_weights(snapshots)
    assert len(mean) == 3
    for i in range(3):
        np.testing.assert_allclose(mean[i], np.mean([s[i] for s in snapshots], axis=0), rtol=1e-12)
    assert mean[2] == 2.0  # batch-norm statistics and scalars average too
    single = mean_weights(snapshots[:1])
    for a, b in zip(single, snapshots[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_refuses_non_positive_counts(tmp_path):
    for flag in ("--average-epochs", "--epochs", "--batch-size"):
        last = usage_error_line(run_cli("train", str(tmp_path), flag, "0"))
        assert last.startswith("serkit train: error: argument") and flag in last and "must be >= 1, got 0" in last, last
