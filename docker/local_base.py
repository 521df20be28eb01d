"""A local stand-in for the Dockerfile's CUDA PyTorch base, for machines that cannot pull it.

Debian bookworm (minbase, from the system's Debian mirror with debootstrap), Python 3.11 in a venv on PATH, and the
torch and torchvision versions that pyproject.toml pins. The wheels come from this machine's local package
directories (pip's configured file:// indexes and find-links, mounted read-only into the install container) so the
GBs of torch and its CUDA libraries are not downloaded; only what they lack comes from PyPI. The result is cached
under a tag named after the versions, so the next run reuses it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from engine import DockerTestError, apt_install, run

SUITE = "bookworm"  # Python 3.11, the version the local wheels are built for (cp311)
DEBIAN_TAG = f"orbit-lite-debian:{SUITE}"
VENV = "/opt/venv"
PYPI = "https://pypi.org/simple"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
MAX_MISSING = 10  # dependencies fetched from PyPI one by one; more than this means the local copy is not the one


def pinned_versions(pyproject: str) -> dict[str, str]:
    """torch's and torchvision's exact versions from pyproject.toml's dependencies (`name==version`)."""
    # A pattern rather than tomllib, which Python 3.10 lacks; dependency strings are quoted one by one.
    pins = dict(re.findall(r"[\"'](torch|torchvision)\s*==\s*([\w.+]+)\s*[\"']", pyproject))
    missing = {"torch", "torchvision"} - pins.keys()
    if missing:
        raise DockerTestError(f"pyproject.toml does not pin {' and '.join(sorted(missing))} with ==: pin it")
    return pins


def base_tag(pins: dict[str, str]) -> str:
    return f"orbit-lite-base:{SUITE}-torch{pins['torch']}-torchvision{pins['torchvision']}"


@dataclass
class PipSources:
    """Where pip finds wheels inside the install container: local indexes and folders, and what to mount for them."""

    indexes: list[str] = field(default_factory=list)  # file:// simple indexes
    find_links: list[str] = field(default_factory=list)  # folders of wheels
    mounts: list[str] = field(default_factory=list)  # host folders, mounted read-only at the same path
    remote_index: str = PYPI
    cert: str = "/etc/ssl/certs/ca-certificates.crt"  # the CA bundle pip trusts here (a proxy's CA may be in it)

    def install_args(self) -> list[str]:
        args = [f"--index-url={self.indexes[0]}"] if self.indexes else ["--no-index"]
        args += [f"--extra-index-url={url}" for url in self.indexes[1:]]
        return args + [f"--find-links={path}" for path in self.find_links]


def pip_sources(config: str) -> PipSources:
    """The local package sources in `pip config list` output (file:// index URLs and find-links folders).

    A file:// index's pages link to files beside it (../../files), so the folder above the index is mounted.
    """
    sources = PipSources()
    for line in config.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name == "cert" and Path(value.strip().strip("'\"")).is_file():
            sources.cert = value.strip().strip("'\"")
            continue
        for item in value.strip().strip("'\"").split():
            local = unquote(urlparse(item).path) if item.startswith("file://") else item
            if name in ("index-url", "extra-index-url"):
                if not item.startswith("file://"):
                    if name == "index-url" and item.startswith("http"):
                        sources.remote_index = item
                    continue
                if Path(local).is_dir() and item not in sources.indexes:
                    sources.indexes.append(item)
                    sources.mounts.append(str(Path(local).parent))
            elif name == "find-links" and Path(local).is_dir() and local not in sources.find_links:
                sources.find_links.append(local)
                sources.mounts.append(local)
    return sources


def host_pip_sources() -> PipSources:
    try:
        done = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return PipSources()
    return pip_sources(done.stdout) if done.returncode == 0 else PipSources()


def install_script(pins: dict[str, str], sources: PipSources) -> str:
    """The install container's shell script: a venv, then torch and torchvision from the local sources; each
    dependency they lack there is downloaded from PyPI (into /extra, a cache kept on the host) and the install retried.
    """
    wanted = [f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"]
    install = " ".join(
        [f"{VENV}/bin/pip install -q", *map(shlex.quote, sources.install_args()), "-f", "/extra", *wanted]
    )
    download = f"{VENV}/bin/pip download -q --no-deps --only-binary=:all: -d /extra --index-url={sources.remote_index}"
    return f"""set -eu
if [ -f /tmp/host-ca.crt ]; then cp /tmp/host-ca.crt {CA_BUNDLE}; fi
python3 -m venv {VENV}
tries=0
until {install} 2>/tmp/pip.err; do
  missing=$(sed -n 's/^ERROR: No matching distribution found for //p' /tmp/pip.err | head -n 1)
  if [ -z "$missing" ] || [ "$tries" -ge {MAX_MISSING} ]; then cat /tmp/pip.err >&2; exit 1; fi
  echo "not in the local wheels, from PyPI: $missing"
  {download} "$missing"
  tries=$((tries + 1))
done
{VENV}/bin/python -c "import torch, torchvision; print('torch', torch.__version__, torchvision.__version__)"
rm -rf /root/.cache /tmp/pip.err
"""


def debian_image(work: Path) -> str:
    """Debian minbase with Python, imported as an image (built once, then reused from the engine's cache)."""
    if run(["docker", "image", "inspect", DEBIAN_TAG], 60, check=False).returncode == 0:
        return DEBIAN_TAG
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"])
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        print(f"docker-test: debootstrap {SUITE} (minbase, Python) into {rootfs}", flush=True)
        run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", SUITE,
             str(rootfs)], 1800)  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            run(["docker", "import", "--change", 'CMD ["python3"]', "-", DEBIAN_TAG], 900, stdin=tar.stdout)
        finally:
            tar.wait(60)
    return DEBIAN_TAG


def build_local_base(work: Path, pins: dict[str, str]) -> str:
    """The cached local base image's tag; built (Debian image, then torch and torchvision committed on it) if absent."""
    tag = base_tag(pins)
    if run(["docker", "image", "inspect", tag], 60, check=False).returncode == 0:
        print(f"docker-test: reusing the local base image {tag}", flush=True)
        return tag
    debian = debian_image(work)
    sources = host_pip_sources()
    extra = work / "extra-wheels"
    extra.mkdir(exist_ok=True)
    where = ", ".join(sources.indexes + sources.find_links) or "PyPI (no local wheel folders configured for pip)"
    print(f"docker-test: torch {pins['torch']}, torchvision {pins['torchvision']} from {where}", flush=True)
    name = "orbit-lite-base-build"
    run(["docker", "rm", "-f", name], 60, check=False)
    mounts = [arg for path in sources.mounts for arg in ("-v", f"{path}:{path}:ro")]
    if Path(sources.cert).is_file():  # this machine's trusted CAs, so pip reaches PyPI wherever the host's pip does
        mounts += ["-v", f"{Path(sources.cert).resolve()}:/tmp/host-ca.crt:ro"]
    # Host networking: PyPI for what the local wheels lack, without relying on the bridge's NAT rules.
    cmd = ["docker", "run", "--name", name, "--network", "host", "-e", "PIP_NO_CACHE_DIR=1", *mounts,
           "-v", f"{extra}:/extra", debian, "sh", "-c", install_script(pins, sources)]  # fmt: skip
    try:
        run(cmd, 2400, capture=False)
        env = f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        # pip, requests and Python's ssl trust the same bundle (pip's own certifi would not have the host's CAs)
        certs = f"ENV PIP_CERT={CA_BUNDLE} REQUESTS_CA_BUNDLE={CA_BUNDLE} SSL_CERT_FILE={CA_BUNDLE}"
        changes = [f"ENV {env}", "ENV LANG=C.UTF-8", certs, 'CMD ["python3"]']
        run(["docker", "commit", *(a for c in changes for a in ("--change", c)), name, tag], 1800)
    finally:
        run(["docker", "rm", "-f", name], 120, check=False)
    return tag
