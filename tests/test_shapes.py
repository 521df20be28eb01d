"""The shape discipline: networks see a few fixed batch sizes; padding changes no output and carries no gradient."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from orbit_lite.config import Config, LiteConfig, ModelConfig, from_dict
from orbit_lite.data.layout import index_tree
from orbit_lite.engine.evaluate import evaluate_users, make_protocol
from orbit_lite.engine.model import Checkpoint, open_model
from orbit_lite.engine.personalize import personalize_user
from orbit_lite.engine.recognize import recognize
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import create_learner
from orbit_lite.models.backbones import create_backbone
from orbit_lite.models.set_encoder import SetEncoder
from orbit_lite.personal import PersonalModel
from orbit_lite.runtime import buckets_of, prepare, prepare_backbone
from orbit_lite.shapes import Buckets, pad_rows, run_bucketed

CPU = torch.device("cpu")
ON = Buckets("on", step=8, largest=32)


def test_bucket_sizes_are_powers_of_two_then_multiples_of_the_step() -> None:
    b = Buckets("on", step=32, largest=256)
    assert b.sizes == (1, 2, 4, 8, 16, 32, 64, 96, 128, 160, 192, 224, 256)
    assert [b.bucket(n) for n in (1, 3, 16, 17, 33, 65, 255, 256)] == [1, 4, 16, 32, 64, 96, 256, 256]
    with pytest.raises(ValueError, match=r"1\.\.256"):
        b.bucket(257)
    assert Buckets("auto").active(torch.device("cuda")) and not Buckets("auto").active(CPU)
    assert Buckets("on").active(CPU) and not Buckets("off").active(torch.device("cuda"))
    for bad, message in (({"mode": "always"}, "mode must be one of"), ({"step": 24}, "power of two"),
                         ({"step": 32, "largest": 100}, "multiple of lite.bucket_step")):  # fmt: skip
        with pytest.raises(OrbitLiteError, match=message):
            Buckets(**bad)
    with pytest.raises(OrbitLiteError, match="power of two"):
        LiteConfig(bucket_step=48)


def test_padding_keeps_the_memory_format() -> None:
    x = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    padded = pad_rows(x, 8)
    assert padded.shape == (8, 3, 8, 8) and padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[:3], x) and not padded[3:].any()


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_vit"])
def test_real_rows_are_unchanged_by_padding(name: str) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name, "none", 32).eval()
    frames = torch.randint(0, 256, (45, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        plain = torch.cat([backbone(f) for f in frames.split(7)])  # mixed sizes, no buckets (CPU default)
        backbone.buckets = ON
        for n in (1, 3, 7, 20, 45):  # 45 > largest: split into 32 + 13 -> 16
            assert torch.allclose(backbone(frames[:n]), plain[:n], atol=1e-6, rtol=0)
    encoder = SetEncoder(16).eval()
    with torch.no_grad():
        reference = encoder(frames[:13])
        assert torch.allclose(run_bucketed(encoder, frames[:13], ON, CPU), reference, atol=1e-6, rtol=0)


def test_padded_rows_carry_no_gradient() -> None:
    torch.manual_seed(0)
    backbone = create_backbone("tiny_cnn", "none", 32)
    x = torch.rand(5, 3, 32, 32)
    seen = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        batch.retain_grad()
        seen.append(batch)
        return backbone(batch)

    grads = []
    for buckets in (Buckets("off"), ON):
        backbone.zero_grad()
        xi = x.clone().requires_grad_()
        run_bucketed(fn, xi, buckets, CPU).pow(2).sum().backward()
        grads.append((xi.grad.clone(), [p.grad.clone() for p in backbone.parameters()]))
    padded = seen[-1]
    assert padded.shape[0] == 8 and torch.equal(padded.grad[5:], torch.zeros_like(padded.grad[5:]))
    (x_off, p_off), (x_on, p_on) = grads
    assert torch.allclose(x_on, x_off, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p_on, p_off, strict=True))


def _record_batches(learner) -> set[int]:
    sizes: set[int] = set()
    learner.backbone.net.register_forward_pre_hook(lambda _m, args: sizes.add(args[0].shape[0]))
    if learner.set_encoder is not None:
        learner.set_encoder.register_forward_pre_hook(lambda _m, args: sizes.add(args[0].shape[0]))
    return sizes


@pytest.mark.parametrize("name", ["protonets", "simple_cnaps"])
def test_100_random_training_tasks_see_at_most_the_bucket_count(name: str) -> None:
    torch.manual_seed(0)
    lite = LiteConfig(h=4, chunk_size=24, query_chunk=20, buckets="on", bucket_step=8, bucket_largest=32)
    model = ModelConfig(learner=name, backbone="tiny_cnn", weights="none")
    learner = create_learner(model, 16, buckets=buckets_of(lite))  # the buckets are the model's from the start
    sizes = _record_batches(learner)
    g = torch.Generator().manual_seed(1)
    seen_n = set()
    for _ in range(100):
        way = int(torch.randint(2, 6, (), generator=g))
        n, q = int(torch.randint(way, 90, (), generator=g)), int(torch.randint(1, 70, (), generator=g))
        length = 1 + int(torch.randint(0, 2, (), generator=g))  # clips of 1 or 2 frames: batches of frames vary more
        context = torch.randint(0, 256, (n, length, 3, 16, 16), dtype=torch.uint8, generator=g)
        labels = torch.cat([torch.arange(way), torch.randint(0, way, (n - way,), generator=g)])
        query = torch.randint(0, 256, (q, length, 3, 16, 16), dtype=torch.uint8, generator=g)
        qlabels = torch.randint(0, way, (q,), generator=g)
        learner.train_task(context, labels, query, qlabels, way, lite, generator=g)
        seen_n.add((n, q, length))
    buckets = learner.backbone.buckets
    assert len(seen_n) > 90  # the tasks really differ in size
    assert sizes and sizes <= set(buckets.sizes) and len(sizes) <= len(buckets.sizes)


def _evaluate_personalize_recognize(learner, cfg: Config, users, videos: list[Path]) -> None:
    results, _ = evaluate_users(learner, users, make_protocol(cfg, tasks=2), cfg)
    assert sum(len(r.scores) for r in results) > 0
    model, _ = personalize_user(learner, users[0], cfg)
    personal = PersonalModel(model.recognizer, model.object_names, "u", cfg.data.frame_size, 1, {})
    for video in videos:
        assert len(recognize(personal, video).predictions) == len(list(video.iterdir()))


def test_evaluation_personalize_and_recognize_see_only_buckets(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    users = index_tree(tiny_frames).users("test")
    clip = next(v for v in users[0].videos() if v.video_type == "clutter")
    videos = []
    for length in (5, 9, 23, 37, 61, 80):  # a varied set of video lengths
        folder = tmp_path / f"video{length}"
        folder.mkdir()
        for i in range(length):
            (folder / f"frame{i:05d}.jpg").write_bytes(clip.frames.path(i).read_bytes())
        videos.append(folder)
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    sizes = _record_batches(learner)
    _evaluate_personalize_recognize(learner, cfg, users, videos)  # CPU default: no buckets
    unpadded = set(sizes)
    settings = ("lite.buckets=on", "lite.bucket_step=4", "lite.bucket_largest=16")  # how it runs: given on opening
    learner, cfg = open_model(Checkpoint(tiny_checkpoint, settings), CPU)
    sizes = _record_batches(learner)
    _evaluate_personalize_recognize(learner, cfg, users, videos)
    assert len(unpadded) > 6 and not unpadded <= {1, 2, 4, 8, 12, 16}
    assert sizes and sizes <= {1, 2, 4, 8, 12, 16}


def test_compile_happens_once_per_bucket_not_once_per_batch_size() -> None:
    compiled: list[int] = []

    def counting_backend(graph, example_inputs):
        compiled.append(next(t.shape[0] for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4))
        return graph.forward

    torch._dynamo.reset()
    backbone = create_backbone("tiny_cnn", "none", 16).eval()
    backbone.buckets = dataclasses.replace(ON, largest=16)
    backbone.compile_per_bucket(backend=counting_backend)
    frames = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        for n in (1, 3, 4, 5, 6, 7, 8, 9, 12, 16, 2, 11):
            out = backbone(frames[:n])
            assert out.shape == (n, backbone.feature_dim)
    assert sorted(compiled) == [1, 2, 4, 8, 16]
    torch._dynamo.reset()


def test_channels_last_is_applied_and_undone_by_the_runtime_settings() -> None:
    from orbit_lite.config import TrainConfig

    backbone = create_backbone("tiny_cnn", "none", 16).eval()
    frames = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        before = backbone(frames)
        ran = prepare_backbone(backbone, CPU, TrainConfig(channels_last="on"))
        conv = next(m for m in backbone.net.modules() if isinstance(m, torch.nn.Conv2d))
        assert ran.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(backbone(frames), before, atol=1e-5)
        ran = prepare_backbone(backbone, CPU, TrainConfig())  # auto: off on the CPU
        assert not ran.channels_last and not ran.buckets and conv.weight.is_contiguous()


def test_evaluate_applies_runtime_settings_and_refuses_model_ones(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml
    from typer.testing import CliRunner

    from orbit_lite import runtime
    from orbit_lite.cli.main import app

    seen: set[int] = set()
    learners = []
    prepare = runtime.prepare

    def watched(learner, *args, **kwargs):  # the batch sizes the evaluated network really runs on
        if not learners:
            learner.backbone.net.register_forward_pre_hook(lambda _m, a: seen.add(a[0].shape[0]))
        learners.append(learner)
        return prepare(learner, *args, **kwargs)

    monkeypatch.setattr(runtime, "prepare", watched)
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--tasks", "1", "--set", "lite.buckets=on", "--set", "lite.bucket_step=4", "--set",
            "lite.bucket_largest=8", "--set", "train.cudnn_benchmark=off"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["lite"]["buckets"] == "on" and saved["lite"]["bucket_step"] == 4
    assert saved["train"]["cudnn_benchmark"] == "off"
    # applied: on a CPU buckets are off unless asked for; here every batch was padded to 1, 2, 4 or 8 frames
    assert learners[-1].backbone.buckets.sizes == (1, 2, 4, 8)
    assert seen and seen <= {1, 2, 4, 8}
    for setting in ("model.head=proto", "train.lr=0.1"):  # what the model is comes from the checkpoint: refused
        refused = CliRunner().invoke(app, [*args, "--set", setting, "--out", str(tmp_path / "x")])
        assert refused.exit_code == 1 and not (tmp_path / "x").exists()
        assert f"--set {setting}: evaluate takes {setting.split('.')[0]}.* from the checkpoint" in refused.stderr


def test_buckets_are_given_at_construction_and_the_runtime_checks_them() -> None:
    assert Buckets() == buckets_of(LiteConfig())  # what a personal file's backbone gets: the config's default
    cfg = from_dict(Config, {"lite": {"buckets": "on", "bucket_step": 4, "bucket_largest": 16}})
    model = ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none")
    learner = create_learner(model, 16, buckets=buckets_of(cfg.lite))
    assert learner.backbone.buckets == Buckets("on", 4, 16) and prepare(learner, cfg, CPU).buckets
    with pytest.raises(ValueError, match="built with"):  # built without the config's buckets: caught, not ignored
        prepare(create_learner(model, 16), cfg, CPU)
