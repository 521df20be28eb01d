"""Load on `orbit-lite serve`: K clients at once on 127.0.0.1, each streaming camera frames over the live socket
(one frame in flight, as the web page does) and uploading clean videos; and the time to teach a 5-object collection.

The service runs in its own process (`python -m orbit_lite serve`, the default recipe unless --config/--checkpoint),
so the clients never share its interpreter. Videos and frames are synthetic (textured coloured objects): nothing
to download. Bounded: --frames per client and --seconds per phase. Prints JSON: per client count, per-frame latency
p50/p95/p99 in ms, frames/s, errors, uploads sent / landed / lost, and the teach time.

    python benchmarks/serve_load.py --clients 1,8 --frames 100 --json
    python benchmarks/serve_load.py --clients 1 --frames 20 --set data.frame_size=64    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from worker import die_with_parent, end_children_on_signals

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[serve_load] {message}", file=sys.stderr, flush=True)


def object_frames(k: int, count: int, side: int, seed: int) -> list[np.ndarray]:
    """Frames of synthetic object ``k``: a coloured, textured shape that drifts across a cluttered background."""
    rng = np.random.default_rng(seed)
    hue = int(180 * k / 7)
    colour = cv2.cvtColor(np.uint8([[[hue, 200, 220]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
    frames = []
    for t in range(count):
        frame = rng.integers(60, 120, (side, side, 3), dtype=np.uint8)
        centre = (side // 2 + int(side * 0.1 * np.sin(t / 4)), side // 2 + int(side * 0.1 * np.cos(t / 5)))
        shape = [cv2.circle, cv2.rectangle][k % 2]
        if shape is cv2.circle:
            cv2.circle(frame, centre, side // (3 + k % 3), colour, -1)
        else:
            half = side // (3 + k % 3)
            cv2.rectangle(frame, (centre[0] - half, centre[1] - half), (centre[0] + half, centre[1] + half), colour, -1)
        cv2.line(frame, (0, (k * 37) % side), (side, (k * 53) % side), (255 - colour[0], 90, 40), 3 + k)
        frames.append(frame)
    return frames


def video_file(path: Path, frames: list[np.ndarray]) -> bytes:
    side = frames[0].shape[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (side, side))
    for f in frames:
        writer.write(f)
    writer.release()
    return path.read_bytes()


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) * 1000 if values else None


def start_server(args: argparse.Namespace, store: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "orbit_lite",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        str(store),
        "--device",
        args.device,
    ]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    for c in args.config:
        command += ["--config", c]
    for o in args.set:
        command += ["--set", o]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=die_with_parent())  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import httpx2 as httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the service did not start within 180 s")


def teach_collection(http, objects: int, videos: int, frames: int, side: int, folder: Path) -> tuple[str, dict, float]:
    cid_token = http.post("/api/collections").json()
    cid, auth = cid_token["id"], {"Authorization": f"Bearer {cid_token['token']}"}
    for k in range(objects):
        for v in range(videos):
            data = video_file(folder / f"o{k}v{v}.mp4", object_frames(k, frames, side, seed=100 * k + v))
            r = http.post(
                f"/api/collections/{cid}/objects/object {k}/videos", headers=auth, files={"file": ("v.mp4", data)}
            )
            r.raise_for_status()
    log(f"uploaded {objects} objects x {videos} videos; teaching")
    start = time.perf_counter()
    job = http.post(f"/api/collections/{cid}/teach", headers=auth).json()["job"]
    while True:
        status = http.get(f"/api/jobs/{job}", headers=auth).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    if status["status"] != "done":
        raise SystemExit(f"teaching failed: {status['error']}")
    return cid, auth, time.perf_counter() - start


def held_out_accuracy(http, cid: str, auth: dict, objects: int, frames: int, side: int, folder: Path) -> dict:
    """Each object filmed once more (a new video), recognized through the API: is the video's answer right?"""
    right = 0
    for k in range(objects):
        data = video_file(folder / f"held{k}.mp4", object_frames(k, frames, side, seed=5000 + k))
        answer = http.post(f"/api/collections/{cid}/recognize", headers=auth, files={"file": ("v.mp4", data)}).json()
        right += answer["inputs"][0]["prediction"] == f"object {k}"
    return {"videos": objects, "right": right}


def client(url: str, cid: str, auth: dict, index: int, args: argparse.Namespace, out: dict, stop: float) -> None:
    """One person: uploads ``--uploads`` clean videos while streaming ``--frames`` camera frames."""
    import httpx2 as httpx
    from websockets.sync.client import connect

    latencies, errors, uploaded = [], [], 0
    folder = Path(args.workdir)

    def uploads() -> None:
        nonlocal uploaded
        with httpx.Client(base_url=url, timeout=120) as http:
            for u in range(args.uploads):
                data = video_file(folder / f"c{index}u{u}.mp4", object_frames(u % 5, 24, args.side, seed=999 + u))
                try:
                    r = http.post(
                        f"/api/collections/{cid}/objects/client {index}/videos",
                        headers=auth,
                        files={"file": ("v.mp4", data)},
                    )
                    if r.status_code == 201:
                        uploaded += 1
                    else:
                        errors.append(f"upload {r.status_code}: {r.text[:100]}")
                except httpx.HTTPError as e:
                    errors.append(f"upload: {e}")

    uploader = threading.Thread(target=uploads)
    uploader.start()
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in object_frames(index % args.objects, 30, args.side, index)]
    try:
        with connect(url.replace("http", "ws") + f"/api/collections/{cid}/live", additional_headers=auth) as ws:
            for i in range(args.frames):
                if time.monotonic() > stop:
                    break
                sent = time.perf_counter()
                ws.send(frames[i % len(frames)])
                answer = json.loads(ws.recv(timeout=60))
                if "error" in answer:
                    errors.append(answer["error"])
                else:
                    latencies.append(time.perf_counter() - sent)
    except Exception as e:  # a dropped socket is one of the errors measured, not a crash of the benchmark
        errors.append(f"live: {type(e).__name__}: {e}")
    uploader.join()
    out[index] = {"latencies": latencies, "errors": errors, "uploaded": uploaded}


def load_phase(url: str, cid: str, auth: dict, clients: int, args: argparse.Namespace, http) -> dict:
    results: dict = {}
    stop = time.monotonic() + args.seconds
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(url, cid, auth, i, args, results, stop)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies = [x for r in results.values() for x in r["latencies"]]
    errors = [e for r in results.values() for e in r["errors"]]
    view = http.get(f"/api/collections/{cid}", headers=auth).json()
    landed = sum(len(o["videos"]) for o in view["objects"] if o["name"].startswith("client "))
    for o in view["objects"]:  # leave the collection as it was for the next phase
        if o["name"].startswith("client "):
            http.delete(f"/api/collections/{cid}/objects/{o['name']}", headers=auth)
    sent = clients * args.uploads
    return {
        "clients": clients,
        "frames": len(latencies),
        "frames_per_second": len(latencies) / wall,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "latency_ms_p99": percentile(latencies, 99),
        "errors": len(errors),
        "error_examples": errors[:3],
        "uploads_sent": sent,
        "uploads_acknowledged": sum(r["uploaded"] for r in results.values()),
        "uploads_landed": landed,
        "uploads_lost": sent - landed,
        "seconds": wall,
    }


def main() -> None:
    end_children_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts, one phase each")
    parser.add_argument("--frames", type=int, default=100, help="live frames per client")
    parser.add_argument("--uploads", type=int, default=2, help="clean videos each client uploads meanwhile")
    parser.add_argument("--seconds", type=float, default=300, help="upper bound on one phase")
    parser.add_argument("--objects", type=int, default=5, help="objects in the taught collection")
    parser.add_argument("--videos", type=int, default=2, help="clean videos per object")
    parser.add_argument("--video-frames", type=int, default=48, help="frames per clean video")
    parser.add_argument("--side", type=int, default=224, help="side of the frames sent, in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    import httpx2 as httpx

    load_before = list(os.getloadavg())  # other work on the machine shows in the latencies: said in the output
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = tmp
        server, url = start_server(args, Path(tmp) / "store")
        log(f"service up at {url}")
        try:
            with httpx.Client(base_url=url, timeout=600) as http:
                cid, auth, teach_s = teach_collection(
                    http, args.objects, args.videos, args.video_frames, args.side, Path(tmp)
                )
                log(f"taught {args.objects} objects in {teach_s:.2f} s")
                held_out = held_out_accuracy(http, cid, auth, args.objects, args.video_frames, args.side, Path(tmp))
                log(f"held-out videos recognized: {held_out['right']} of {held_out['videos']}")
                phases = []
                for k in [int(c) for c in args.clients.split(",")]:
                    log(f"{k} client(s): {args.frames} frames and {args.uploads} uploads each")
                    phases.append(load_phase(url, cid, auth, k, args, http))
                    log(json.dumps({key: phases[-1][key] for key in ("latency_ms_p95", "frames_per_second", "errors")}))
        finally:
            server.terminate()
            server.wait(30)
    result = {
        "benchmark": "serve_load",
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "device": args.device,
        "model": args.checkpoint or (args.config or ["configs/photos_pretrained.yaml (default)"]),
        "overrides": args.set,
        "frame_side": args.side,
        "teach": {
            "objects": args.objects,
            "videos_per_object": args.videos,
            "frames_per_video": args.video_frames,
            "seconds": teach_s,
        },
        "held_out_videos": held_out,
        "load": phases,
    }
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
