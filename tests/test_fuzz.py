"""A fuzzer in the suite: random and mutated checkpoints, personal files, configs, annotation JSON and frames fed to
the loaders in-process. The property: success or one OrbitLiteError, never another exception, never a file outside
the case's own folder. ``benchmarks/fuzz.py`` runs the same inputs (and the commands) by the thousand."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fuzz

# derandomized: the same few hundred cases every run (a failure is reproducible); no example database in the repo
CASES = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tiny_frames: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> fuzz.Seeds:
    personal = tmp_path_factory.mktemp("fuzz") / "me.pt"
    user = index_tree(tiny_frames).users("test")[0].user_id
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_frames), "--user", user]
    assert CliRunner().invoke(app, [*args, "--out", str(personal), "--device", "cpu"]).exit_code == 0
    return fuzz.from_files(tiny_frames, tiny_checkpoint, personal)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cases")


def _holds(target: str, data: bytes, seeds: fuzz.Seeds, scratch: Path) -> None:
    work = Path(tempfile.mkdtemp(dir=scratch))
    before = {p for p in scratch.rglob("*") if work not in (p, *p.parents)}
    try:
        assert fuzz.run_case(target, data, seeds, work, command=False) in ("ok", "error")  # anything else raised
        after = {p for p in scratch.rglob("*") if work not in (p, *p.parents)}
        assert after == before, sorted(after - before)[:3]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("target", fuzz.TARGETS)
@settings(CASES, max_examples=40)
@given(rng=st.randoms(use_true_random=False))
def test_mutated_inputs_load_or_fail_with_one_line(target: str, rng, seeds: fuzz.Seeds, scratch: Path) -> None:
    _holds(target, fuzz.make_input(target, seeds, rng), seeds, scratch)


@pytest.mark.parametrize("target", fuzz.TARGETS)
@settings(CASES, max_examples=10)
@given(data=st.binary(max_size=2048))
def test_random_bytes_load_or_fail_with_one_line(target: str, data: bytes, seeds: fuzz.Seeds, scratch: Path) -> None:
    _holds(target, data, seeds, scratch)


def test_the_property_fails_on_a_loader_that_raises_another_exception(
    seeds: fuzz.Seeds, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness itself can fail: a loader's KeyError is a crash, not an outcome."""
    import orbit_lite.config as config

    def broken(*args, **kwargs):
        raise KeyError("train")

    monkeypatch.setattr(config, "load_config", broken)
    with pytest.raises(KeyError):
        fuzz.run_case("config", b"train: {}\n", seeds, Path(tempfile.mkdtemp(dir=scratch)), command=False)
