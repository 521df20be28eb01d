"""The benchmarks' own machinery: activation checkpointing changes memory, never the gradient; partial results are
written whole; a benchmark's children end with it."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from orbit_lite.config import LiteConfig, ModelConfig
from orbit_lite.learners import create_learner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from lite_memory import _Checkpointed, checkpoint_stages
from worker import claim_save_path, run_child, save_partial

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# A benchmark in miniature: its child (a long sleep) writes its pid where the test can find it.
PARENT = """
import sys
from worker import end_children_on_signals, run_child
end_children_on_signals()
child = "import os, sys, time; open(sys.argv[1] + '.part', 'w').write(str(os.getpid())); "
child += "os.replace(sys.argv[1] + '.part', sys.argv[1]); time.sleep(30)"
run_child([sys.executable, "-c", child, sys.argv[1]])
"""


def _gradients(learner: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    context = torch.randint(0, 256, (6, 1, 3, 32, 32), dtype=torch.uint8, generator=g)
    query = torch.randint(0, 256, (4, 1, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels, query_labels = torch.arange(6) % 3, torch.arange(4) % 3
    lite = LiteConfig(enabled=False, h=6, chunk_size=4, query_chunk=4)
    learner.train_task(context, labels, query, query_labels, 3, lite, torch.Generator().manual_seed(0))
    return {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backbone", ["tiny_cnn", "tiny_vit"])
def test_checkpointing_the_stages_leaves_the_gradient_unchanged(backbone: str) -> None:
    torch.manual_seed(0)
    plain = create_learner(ModelConfig(learner="protonets", backbone=backbone, weights="none"), 32)
    kept = copy.deepcopy(plain)
    stages = checkpoint_stages(kept.backbone.net)
    assert stages >= 2 and sum(isinstance(m, _Checkpointed) for m in kept.modules()) == stages
    want, got = _gradients(plain), _gradients(kept)
    assert want and {k.replace(".stage", "") for k in got} == set(want)
    for name, grad in got.items():
        torch.testing.assert_close(grad, want[name.replace(".stage", "")], rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointing_a_network_without_stages_says_so() -> None:
    with pytest.raises(SystemExit, match="no stages to checkpoint in Linear"):
        checkpoint_stages(torch.nn.Linear(2, 2))


def test_partial_results_are_written_whole_and_leave_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    save_partial(str(path), {"results": [1]})
    save_partial(str(path), {"results": [1, 2]})
    assert json.loads(path.read_text()) == {"results": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    save_partial(None, {"results": []})  # no --save: nothing written
    assert json.loads(path.read_text()) == {"results": [1, 2]}


def test_save_refuses_a_file_it_did_not_start(tmp_path: Path) -> None:
    mine = tmp_path / "notes.json"
    mine.write_text("the user's own file")
    with pytest.raises(SystemExit, match=r"--save .*notes.json exists: choose a new path"):
        claim_save_path(str(mine))
    assert mine.read_text() == "the user's own file"
    claim_save_path(str(tmp_path / "new.json"))  # a new path is taken
    claim_save_path(None)


def test_feature_memo_gives_the_backbones_features_and_encodes_each_frame_once() -> None:
    from pretrained_claims import FeatureMemo

    torch.manual_seed(0)
    protonets = create_learner(ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none"), 32).eval()
    finetuner = create_learner(ModelConfig(learner="finetuner", backbone="tiny_cnn", weights="none"), 32).eval()
    finetuner.backbone = protonets.backbone  # as pretrained_sizes shares one backbone between the learners
    frames = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        direct = protonets.backbone(frames)
    memo = FeatureMemo(protonets.backbone)
    batch = torch.cat([frames[:3], frames[:1]])  # a frame twice in one batch
    with torch.no_grad():
        first = finetuner.backbone(batch)
        second = protonets.backbone(frames)
    torch.testing.assert_close(first, torch.cat([direct[:3], direct[:1]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(second, direct, atol=1e-6, rtol=0)
    assert memo.encoded == 5  # three new frames, then the two not seen before


def test_paired_verdicts_follow_the_interval_of_the_difference() -> None:
    from claims_pretrained_report import paired, verdict

    before = {"per_video": {f"0/v{i}": 0.4 + 0.01 * i for i in range(10)}}
    after = {"per_video": {**{f"0/v{i}": 0.6 + 0.01 * i for i in range(10)}, "0/other": 1.0}}
    gain = paired(before, after)
    assert gain["n"] == 10 and abs(gain["mean"] - 20) < 1e-9 and gain["ci95"] < 1e-9  # only the shared videos
    assert verdict(gain, 12) == "holds" and verdict(paired(after, before)) == "contradicted"
    assert verdict(gain, 25).startswith("holds in direction")
    noisy = {"per_video": {f"0/v{i}": 0.4 + (0.3 if i % 2 else -0.3) for i in range(10)}}
    assert verdict(paired(before, noisy)) == "not shown"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def _parent_and_child(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS)}
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)], env=env)
    for _ in range(300):
        if pid_file.exists() or parent.poll() is not None:
            break
        time.sleep(0.05)
    assert pid_file.exists(), f"the child never started (parent exit {parent.poll()})"
    return parent, int(pid_file.read_text())


def _ends_soon(pid: int) -> bool:
    for _ in range(200):
        if not _alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # the test's own grandchild, left behind: the property failed
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_benchmarks_child_ends_with_it(tmp_path: Path, how: signal.Signals) -> None:
    parent, child = _parent_and_child(tmp_path)
    try:
        assert _alive(child)
        parent.send_signal(how)
        code = parent.wait(30)
    finally:
        parent.kill()
    assert _ends_soon(child), f"the child outlived its parent's {how.name}"
    if how == signal.SIGTERM:  # unwound like Ctrl-C (temporary folders removed), not cut off
        assert code == 128 + signal.SIGTERM


def test_run_child_returns_what_subprocess_run_does() -> None:
    done = run_child([sys.executable, "-c", "print('out'); raise SystemExit(3)"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "")


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell")
def test_run_child_ends_its_child_when_interrupted(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):  # as mutation_check's per-mutation limit interrupts it
        run_child(["sh", "-c", 'echo $$ > "$0"; exec sleep 60', str(pid_file)], timeout=1)
    assert time.monotonic() - start < 10  # asked to stop, not waited for
    assert not _alive(int(pid_file.read_text()))


def test_finetuner_probe_scales_features_to_unit_length_and_names_the_worst_videos() -> None:
    from finetuner_sizes import UnitLength, largest_drops

    features = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    unit = UnitLength(lambda frames, film=None: frames * 1.0)(features)
    torch.testing.assert_close(unit, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))  # direction kept, length 1
    scores = {
        (224, "default"): {"a": 1.0, "b": 0.5, "c": 0.9},
        (320, "default"): {"a": 0.1, "b": 0.6, "c": 0.7},
        (224, "protonets"): {"a": 0.9, "b": 0.4, "c": 0.8},
        (320, "protonets"): {"a": 0.95, "b": 0.5, "c": 0.8},
    }
    by = {key: {"per_video": videos} for key, videos in scores.items()}
    drops = largest_drops(by, 224, 320, n=2)
    assert [d["video"] for d in drops] == ["a", "c"]  # -0.9, then -0.2; b rose
    assert drops[0] == {"video": "a", "finetuner_224": 1.0, "finetuner_320": 0.1, "protonets_224": 0.9,
                        "protonets_320": 0.95}  # fmt: skip
