"""The CUDA paths that "auto" turns on only on a GPU: shape buckets, channels-last, pinned memory (marker ``gpu``;
skipped where no CUDA device is visible)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orbit_lite.config import Config, LiteConfig, TrainConfig, from_dict
from orbit_lite.data.layout import index_tree
from orbit_lite.data.loader import UserTaskDataset, task_loader
from orbit_lite.models.backbones import create_backbone
from orbit_lite.runtime import buckets_of, prepare_backbone
from tests.conftest import TINY_RECIPE

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)


def test_auto_pads_to_buckets_and_uses_channels_last_on_cuda() -> None:
    torch.manual_seed(0)
    cpu = create_backbone("tiny_cnn", "none", frame_size=32).eval()
    gpu = create_backbone(
        "tiny_cnn", "none", frame_size=32, buckets=buckets_of(LiteConfig(bucket_step=8, bucket_largest=32))
    )
    gpu.eval().load_state_dict(cpu.state_dict())
    gpu.to(CUDA)
    ran = prepare_backbone(gpu, CUDA, TrainConfig())
    assert ran.buckets and ran.channels_last and ran.cudnn_benchmark  # what "auto" means on CUDA
    conv = next(m for m in gpu.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen: list[tuple[int, bool]] = []
    gpu.net.register_forward_pre_hook(
        lambda _m, a: seen.append((a[0].shape[0], a[0].is_contiguous(memory_format=torch.channels_last)))
    )
    frames = _frames(45)
    with torch.inference_mode():
        features = gpu(frames.to(CUDA))
        expected = cpu(frames)
    assert features.shape == (45, 64)  # the padding rows are gone again
    assert [n for n, _ in seen] == [32, 16] and all(layout for _, layout in seen)  # 45 = 32 + 13, padded to 16
    torch.testing.assert_close(features.cpu(), expected, rtol=1e-3, atol=1e-3)  # TF32 and cuDNN, not exact


def test_off_leaves_shapes_and_layout_alone_on_cuda() -> None:
    gpu = create_backbone("tiny_cnn", "none", frame_size=32, buckets=buckets_of(LiteConfig(buckets="off")))
    gpu = gpu.eval().to(CUDA)
    off = TrainConfig(channels_last="off", cudnn_benchmark="off", pin_memory="off")
    ran = prepare_backbone(gpu, CUDA, off)
    assert not (ran.buckets or ran.channels_last or ran.cudnn_benchmark or ran.pin_memory)
    seen: list[int] = []
    gpu.net.register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape[0]))
    with torch.inference_mode():
        gpu(_frames(45).to(CUDA))
    assert seen == [45]


def test_training_tasks_arrive_in_pinned_memory_on_cuda(tiny_frames: Path) -> None:
    gpu = create_backbone("tiny_cnn", "none", frame_size=32).to(CUDA)
    ran = prepare_backbone(gpu, CUDA)
    assert ran.pin_memory  # auto: on with CUDA; the training loop hands this to its loader
    cfg = from_dict(Config, TINY_RECIPE)
    users = index_tree(tiny_frames).users("train")
    dataset = UserTaskDataset(users, cfg.train_sampling, cfg.data, train=True, tasks_per_user=1)
    task = next(iter(task_loader(dataset, shuffle=False, pin_memory=ran.pin_memory)))
    assert task.context_clips.is_pinned() and task.target_clips.is_pinned()


def test_cuda_graphs_replay_the_eager_features_and_skip_the_network_on_a_seen_bucket() -> None:
    torch.manual_seed(0)
    buckets = buckets_of(LiteConfig(bucket_step=8, bucket_largest=32))
    eager = create_backbone("tiny_cnn", "none", frame_size=32, buckets=buckets).eval().to(CUDA)
    graphed = create_backbone("tiny_cnn", "none", frame_size=32, buckets=buckets).eval().to(CUDA)
    graphed.load_state_dict(eager.state_dict())
    prepare_backbone(eager, CUDA, TrainConfig(tf32="off"))
    assert prepare_backbone(graphed, CUDA, TrainConfig(cuda_graphs="on", tf32="off")).cuda_graphs
    calls: list[int] = []
    graphed.net.register_forward_pre_hook(lambda _m, a: calls.append(a[0].shape[0]))
    for n in (45, 13, 45):  # buckets 32 + 16, then 16, then both again
        frames = _frames(n, seed=n).to(CUDA)
        with torch.no_grad():
            torch.testing.assert_close(graphed(frames), eager(frames), rtol=1e-5, atol=1e-5)
    assert calls == [32] * 3 + [16] * 3  # two warm-up runs and the capture per bucket; replays run no Python
    features = graphed(_frames(5).to(CUDA))  # with a graph: eager, and differentiable
    assert features.requires_grad and calls[-1] == 8
