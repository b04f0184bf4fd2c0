"""Shared fixtures (keep small): a session folder for generated media."""

import pytest


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """A folder for media generated once per session (tests/media.py writes into it)."""
    return tmp_path_factory.mktemp("media")
