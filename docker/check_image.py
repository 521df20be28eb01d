"""`make docker-test`: build the Dockerfile and run orbit-lite's main job in the container, as its non-root user.

Makes sure a Docker engine runs (docker/engine.py), uses the Dockerfile's base image or, when it cannot be pulled, a
local one with the same torch and torchvision (docker/local_base.py), builds the image with `--build-arg
BASE_IMAGE=...`, then runs --version, data synth, train, personalize, recognize, evaluate and export with data, runs
and weights as volumes on the host, checks the outputs there, that every file the job wrote is owned by the image's
user and that no process in the containers ran as root, and starts `serve` and sends it one request where the image
has that command. Prints one JSON object with the timings and sizes; a failure is one line and exit status 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from engine import DockerTestError, Engine, ensure_engine, last_line, run
from local_base import build_local_base, pinned_versions

ROOT = Path(__file__).parent.parent
IMAGE = os.environ.get("ORBIT_LITE_DOCKER_IMAGE", "orbit-lite:docker-test")
WORK = Path(os.environ.get("ORBIT_LITE_DOCKER_WORK", ROOT / "runs" / "docker-test")).resolve()
USER_ID = "1000"  # the Dockerfile's user
STEP_SECONDS = 900
PULL_SECONDS = 180
# Train for one epoch of two tiny tasks per user on the tiny preset's 32 px frames: the job, not a model.
TRAIN_SETTINGS = ["data.frame_size=32", "data.num_workers=0", "lite.h=2", "lite.chunk_size=8", "lite.query_chunk=16",
                  "train.epochs=1", "train.tasks_per_user=2", "train.tasks_per_batch=2", "train.val_tasks_per_user=1",
                  "train_sampling.subsample_factor=4", "train_sampling.clip_cap=10"]  # fmt: skip


def dockerfile_base(dockerfile: str) -> str:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    if match is None:
        raise DockerTestError("the Dockerfile has no `ARG BASE_IMAGE=...` default")
    return match[1]


def choose_base(work: Path) -> tuple[str, bool]:
    """The base image to build on, and whether it is the local stand-in."""
    default = dockerfile_base((ROOT / "Dockerfile").read_text())
    if run(["docker", "image", "inspect", default], 60, check=False).returncode == 0:
        return default, False
    if os.environ.get("ORBIT_LITE_DOCKER_PULL", "1") == "1":
        print(f"docker-test: pulling {default} (at most {PULL_SECONDS} s)", flush=True)
        try:
            if run(["docker", "pull", "-q", default], PULL_SECONDS, check=False).returncode == 0:
                return default, False
        except DockerTestError:
            pass
        print(f"docker-test: {default} cannot be pulled here; using a local base with the same torch", flush=True)
    return build_local_base(work, pinned_versions((ROOT / "pyproject.toml").read_text())), True


class RootWatch:
    """Samples `docker top` of a running container: the user ids of every process seen in it."""

    def __init__(self, container: str) -> None:
        self.container, self.uids, self.samples = container, set(), 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            top = subprocess.run(["docker", "top", self.container, "-o", "uid,pid,args"], capture_output=True,
                                 text=True, timeout=30)  # fmt: skip
            if top.returncode == 0:
                self.samples += 1
                self.uids |= {line.split()[0] for line in top.stdout.splitlines()[1:] if line.strip()}
            self.done.wait(0.5)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(40)


class Job:
    """The containers of one run: each step runs detached with the volumes, watched, waited for, then removed."""

    def __init__(self, volumes: Path) -> None:
        self.volumes = volumes
        self.uids: set[str] = set()
        self.samples = 0
        self.seconds: dict[str, float] = {}

    def docker_run(self, name: str, args: list[str], data_ro: bool = True, detach: bool = True) -> list[str]:
        mounts = []
        for volume in ("data", "runs", "weights"):
            mode = ":ro" if volume == "data" and data_ro else ""
            mounts += ["-v", f"{self.volumes / volume}:/{volume}{mode}"]
        how = ["-d"] if detach else ["--rm"]
        return ["docker", "run", *how, "--name", f"orbit-lite-test-{name}", "--network", "none", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", *mounts, IMAGE, *args]  # fmt: skip

    def step(self, name: str, args: list[str], data_ro: bool = True) -> str:
        """Run one orbit-lite command in a fresh container; its output, or a one-line error with its last line."""
        container = f"orbit-lite-test-{name}"
        run(["docker", "rm", "-f", container], 60, check=False)
        start = time.monotonic()
        print(f"docker-test: orbit-lite {' '.join(args)}", flush=True)
        run(self.docker_run(name, args, data_ro), 120)
        watch = RootWatch(container)
        try:
            status = run(["docker", "wait", container], STEP_SECONDS).stdout.strip()
        finally:
            watch.stop()
            logs = run(["docker", "logs", container], 60, check=False)
            run(["docker", "rm", "-f", container], 60, check=False)
        self.uids |= watch.uids
        self.samples += watch.samples
        self.seconds[name] = round(time.monotonic() - start, 1)
        if status != "0":
            detail = last_line(logs.stdout + logs.stderr)
            raise DockerTestError(f"orbit-lite {args[0]} in the container exited {status}: {detail}")
        return logs.stdout


def fresh_volumes(work: Path) -> Path:
    """Empty host folders for the container's volumes, owned by the image's user (they are this script's own)."""
    volumes = work / "volumes"
    if volumes.exists():
        shutil.rmtree(volumes)
    for name in ("data", "runs", "weights"):
        (volumes / name).mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(volumes / name, int(USER_ID), int(USER_ID))
    return volumes


def main_job(job: Job) -> dict:
    """The main job in the container; its outputs are checked on the host's volumes."""
    host = job.volumes
    version = job.step("version", ["--version"]).strip()
    if not version.startswith("orbit-lite "):
        raise DockerTestError(f"orbit-lite --version printed {version!r}")
    job.step("synth", ["data", "synth", "/data/tiny", "--preset", "tiny", "--seed", "0"], data_ro=False)
    user = sorted(p.name for p in (host / "data/tiny/test").iterdir())[0]
    video = sorted((host / "data/tiny/test" / user).glob("*/clutter/*"))[0]
    sets = [a for s in TRAIN_SETTINGS for a in ("--set", s)]
    job.step("train", ["train", "--data", "/data/tiny", "--config", "/opt/orbit-lite/configs/cpu_demo.yaml", *sets,
                       "--out", "/runs/train", "--device", "cpu"])  # fmt: skip
    checkpoint = "/runs/train/checkpoints/best.pt"
    job.step("personalize", ["personalize", "--user", user, "--data", "/data/tiny", "--checkpoint", checkpoint,
                             "--out", "/runs/personal.pt", "--device", "cpu"])  # fmt: skip
    inside = f"/data/{video.relative_to(host / 'data')}"
    recognized = job.step("recognize", ["recognize", "--model", "/runs/personal.pt", inside, "--label",
                                        video.parent.parent.name, "--json", "--csv", "/runs/recognized.csv",
                                        "--plot", "/runs/recognized.png", "--device", "cpu"])  # fmt: skip
    job.step("evaluate", ["evaluate", "--data", "/data/tiny", "--checkpoint", checkpoint, "--out", "/runs/eval",
                          "--tasks", "1", "--device", "cpu"])  # fmt: skip
    job.step("export", ["export", "--model", "/runs/personal.pt", "--out", "/runs/personal.onnx"])
    expected = ["data/tiny/train", "runs/train/checkpoints/best.pt", "runs/train/metrics.jsonl",
                "runs/personal.pt", "runs/recognized.csv", "runs/recognized.png", "runs/eval/results.json",
                "runs/personal.onnx"]  # fmt: skip
    missing = [p for p in expected if not (host / p).exists()]
    if missing:
        raise DockerTestError(f"the job left no {', '.join(missing)} on the host's volumes under {host}")
    return {"version": version, "frames_recognized": json.loads(recognized)["inputs"][0]["frames"]}


def check_owners(volumes: Path) -> int:
    """Every file and folder the job wrote on the host belongs to the image's user; the count checked."""
    paths = [p for p in volumes.rglob("*")]
    foreign = [p for p in paths if str(p.lstat().st_uid) != USER_ID]
    if foreign:
        raise DockerTestError(f"{len(foreign)} files on the volumes are not owned by uid {USER_ID}, e.g. {foreign[0]}")
    return len(paths)


def serve_check(job: Job) -> str:
    """Start `orbit-lite serve` in the container and answer one request, where the image has the command."""
    if run(job.docker_run("serve-help", ["serve", "--help"], detach=False), 120, check=False).returncode != 0:
        print("docker-test: skipped serve: this image's orbit-lite has no `serve` command", flush=True)
        return "skipped: no serve command"
    container = "orbit-lite-test-serve"
    run(["docker", "rm", "-f", container], 60, check=False)
    args = ["serve", "--checkpoint", "/runs/train/checkpoints/best.pt", "--store", "/runs/serve", "--host",
            "127.0.0.1", "--port", "8000", "--device", "cpu"]  # fmt: skip
    run(job.docker_run("serve", args), 120)
    # The request comes from inside the container (its own 127.0.0.1; the container has no network).
    request = ("import json, time, urllib.error, urllib.request\n"
               "for _ in range(120):\n"
               "    try:\n"
               "        r = urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/api/collections',"
               " method='POST'), timeout=10)\n"
               "        print(r.status, json.dumps(sorted(json.load(r)))); break\n"
               "    except urllib.error.HTTPError as e:\n"
               "        print(e.code, e.read()[:200]); break\n"
               "    except OSError:\n"  # not listening yet
               "        time.sleep(1)\n")  # fmt: skip
    watch = RootWatch(container)
    try:
        asked = run(["docker", "exec", container, "python", "-c", request], 200, check=False)
    finally:
        watch.stop()
        logs = run(["docker", "logs", container], 60, check=False)
        run(["docker", "rm", "-f", container], 60, check=False)
    job.uids |= watch.uids
    job.samples += watch.samples
    answer = asked.stdout.strip()
    if not answer.startswith("201") or "token" not in answer:
        detail = last_line(asked.stderr + logs.stdout + logs.stderr)
        raise DockerTestError(
            f"serve in the container did not answer POST /api/collections with 201 ({answer!r}): {detail}"
        )
    return f"answered: {answer}"


def image_bytes(image: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image], 60).stdout)


def main() -> int:
    engine = Engine()
    # A kill (CI's timeout) goes through the finally below too, so a daemon started here is always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        WORK.mkdir(parents=True, exist_ok=True)
        engine = ensure_engine(WORK)
        seconds["engine"] = round(time.monotonic() - start, 1)
        base, local = choose_base(WORK)
        seconds["base"] = round(time.monotonic() - start - sum(seconds.values()), 1)
        print(f"docker-test: docker build -t {IMAGE} --build-arg BASE_IMAGE={base} .", flush=True)
        run(["docker", "build", "--network", "host", "-t", IMAGE, "--build-arg", f"BASE_IMAGE={base}", str(ROOT)],
            STEP_SECONDS * 2, capture=False, env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
        seconds["build"] = round(time.monotonic() - start - sum(seconds.values()), 1)
        user = run(["docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE], 60).stdout.strip()
        if user in ("", "0", "root"):
            raise DockerTestError(f"the image runs as {user or 'root'}: the Dockerfile's last USER must not be root")
        job = Job(fresh_volumes(WORK))
        results = main_job(job)
        results["serve"] = serve_check(job)
        files = check_owners(job.volumes)
        if not job.samples or job.uids - {USER_ID}:
            raise DockerTestError(f"processes in the containers ran as uids {sorted(job.uids)} ({job.samples} samples)")
        seconds["job"] = round(time.monotonic() - start - sum(seconds.values()), 1)
        report = {
            "image": IMAGE, "base": base, "local_base": local, "user": user, "process_uids_seen": sorted(job.uids),
            "top_samples": job.samples, "files_on_volumes": files, "image_bytes": image_bytes(IMAGE),
            "base_bytes": image_bytes(base), **results, "step_seconds": job.seconds,
            "seconds": {**seconds, "total": round(time.monotonic() - start, 1)},
        }  # fmt: skip
        print(json.dumps(report, indent=1))
        return 0
    except DockerTestError as error:
        print(f"docker-test: error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
