"""Shared fixtures: small synthetic ORBIT trees, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbit_lite.data.synth import synthesize


@pytest.fixture(scope="session")
def tiny_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset as JPEG frame folders (32 px)."""
    return synthesize(tmp_path_factory.mktemp("synth") / "frames", "tiny", fmt="frames", seed=0).root


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tree (same seed) as mp4 files."""
    return synthesize(tmp_path_factory.mktemp("synth") / "videos", "tiny", fmt="videos", seed=0).root


@pytest.fixture
def tiny_copy(tiny_frames: Path, tmp_path: Path) -> Path:
    """A private copy of the frame tree that a test may damage."""
    import shutil

    return Path(shutil.copytree(tiny_frames, tmp_path / "tree"))
