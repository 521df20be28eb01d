"""A Docker engine for `make docker-test`: the one that answers, or Debian's started here as root; stopped if started.

Every wait is bounded, and a failure is one line (DockerTestError) that says what to install or where the log is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

START_SECONDS = 90  # dockerd answers within seconds on these machines; a slow disk gets a margin
STOP_SECONDS = 30


class DockerTestError(Exception):
    """A failure of `make docker-test`, printed as one line."""


def run(
    cmd: list[str], timeout: float, *, check: bool = True, capture: bool = True, **kw
) -> subprocess.CompletedProcess:
    """Run a command with a time limit; a timeout or (with check) a failure becomes one DockerTestError line."""
    try:
        done = subprocess.run(cmd, timeout=timeout, capture_output=capture, text=True, **kw)
    except subprocess.TimeoutExpired:
        raise DockerTestError(f"`{' '.join(cmd[:3])} ...` did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise DockerTestError(f"{cmd[0]} is not installed") from None
    if check and done.returncode != 0:
        detail = last_line(done.stderr or done.stdout or "") if capture else "see the output above"
        raise DockerTestError(f"`{' '.join(cmd[:3])} ...` failed (exit {done.returncode}): {detail}")
    return done


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def apt_install(packages: list[str]) -> None:
    """Install Debian packages; refresh the package lists once if the first try cannot find them."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        names = " ".join(packages)
        raise DockerTestError(
            f"{names} missing and this is not a root Debian shell: install them (apt-get install {names})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    print(f"docker-test: installing {' '.join(packages)} from the system's Debian packages", flush=True)
    if run(install, 900, check=False, env=env).returncode != 0:
        run(["apt-get", "update", "-q"], 600, env=env)
        run(install, 900, env=env)


@dataclass
class Engine:
    """The engine in use; `process` is set only when this run started dockerd, and only then is it stopped."""

    process: subprocess.Popen | None = None
    log: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd, then exits
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        print(f"docker-test: stopped the dockerd it started (pid {self.process.pid})", flush=True)


def ensure_engine(work: Path) -> Engine:
    """Use the engine that answers; else, as root, install docker.io if needed and start dockerd in the background."""
    if engine_answers():
        return Engine()
    if os.geteuid() != 0:
        raise DockerTestError(
            "no Docker engine answers and this is not root: install docker.io (apt-get install docker.io), start "
            "dockerd, and give this user access to /var/run/docker.sock (or run make docker-test as root)"
        )
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        apt_install(["docker.io"])
    log = work / "dockerd.log"
    with log.open("w") as out:
        # Its own session: a Ctrl-C in the terminal reaches this script, which stops dockerd in order.
        process = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine(process, log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DockerTestError(f"dockerd exited with {process.returncode}: {last_line(log.read_text())} ({log})")
        if engine_answers():
            print(f"docker-test: started dockerd (pid {process.pid}, log {log})", flush=True)
            return engine
        time.sleep(1)
    engine.stop()
    raise DockerTestError(f"dockerd did not answer within {START_SECONDS} s: {last_line(log.read_text())} ({log})")
