"""The test tiers: every test that trains a model carries the `slow` mark, so `pytest -m "not slow"` stays quick."""

from __future__ import annotations

from conftest import ROOT, UNMARKED_TRAINING

pytest_plugins = ["pytester"]


def test_every_test_using_a_training_fixture_is_marked_slow(request):
    assert request.config.stash[UNMARKED_TRAINING] == []


def test_the_check_finds_an_unmarked_test_and_accepts_a_marked_one(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: trains a model\n")
    pytester.makepyfile(
        test_example="""
        import pytest
        from conftest import UNMARKED_TRAINING

        def test_unmarked(refit_dir): pass

        @pytest.mark.slow
        def test_marked(run_dir): pass

        def test_report(request):
            print("UNMARKED", request.config.stash[UNMARKED_TRAINING])
        """
    )
    # -m "not slow" deselects the marked test and the run_dir training never starts; the check saw both.
    result = pytester.runpytest("-m", "not slow", "-k", "report", "-s", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert "UNMARKED ['test_example.py::test_unmarked']" in result.stdout.str()
