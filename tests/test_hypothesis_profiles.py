"""The hypothesis profiles: CI draws the same examples every run and replays no stored failure."""

from __future__ import annotations

from hypothesis import settings


def test_the_ci_profile_is_derandomized_and_has_no_example_database():
    ci = settings.get_profile("ci")
    assert ci.derandomize
    # A database keyed by the test function alone would replay one backend's failure on all.
    assert ci.database is None


def test_the_thorough_profile_explores():
    thorough = settings.get_profile("thorough")
    assert not thorough.derandomize
    assert thorough.max_examples > settings.get_profile("ci").max_examples
