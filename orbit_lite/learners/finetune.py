"""FineTuner and FineTuner + FiLM: personalization by gradient steps, the ORBIT reference's third family.

Per task: a linear head starting at zeros, ``finetune.steps`` full-batch steps of Adam or SGD
with cross-entropy over every context clip, BatchNorm in eval mode. ``finetuner_film`` also tunes the weight and
bias of the backbone's FiLM-tagged norm layers themselves (the reference's ``unfreeze_film``), starting from the
backbone's values for every task; the optimizer sees those very tensors, as the reference's does (a multiplicative
re-parameterisation would change Adam's steps).

Same result, less work than the reference:

- ``finetuner`` trains only the head, so the backbone's features never change: each context frame is encoded once
  and the steps run on the cached features (the reference re-runs the backbone at every step).
- ``finetuner_film`` uses LITE at personalization: each step forwards every context clip without a graph and
  back-propagates H random ones scaled by N/H (:func:`orbit_lite.lite.lite_forward`), so the gradient is unbiased
  and memory does not grow with the context set. With N <= H it is the exact gradient, computed in chunks of
  ``finetune.batch_size`` clips each weighted by its share of the set, like the reference.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from orbit_lite.config import FinetuneConfig, ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners.base import Learner, LearnerSpec, Personalized
from orbit_lite.lite import lite_forward
from orbit_lite.progress import Progress, Step, counting
from orbit_lite.shapes import Buckets


def make_optimizer(
    head: list[torch.Tensor], backbone: list[torch.Tensor], cfg: FinetuneConfig, style: str
) -> torch.optim.Optimizer:
    """The personalization optimizer over the head's and the tuned backbone tensors (two parameter groups).

    Under ``model.style=reference`` the backbone group carries ``extractor_lr_scale`` as an ``lr_scale`` key that
    torch's optimizers ignore, as in the reference; otherwise it scales that group's learning rate.
    """
    if style == "reference":
        extra = {"lr_scale": cfg.extractor_lr_scale}
    else:
        extra = {"lr": cfg.lr * cfg.extractor_lr_scale}
    groups = [{"params": head}] + ([{"params": backbone, **extra}] if backbone else [])
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class FineTuner(Learner):
    """A frozen backbone, a per-task linear head and (``tune_film``) per-task norm-layer affines, tuned by gradient.

    Args:
        model: the model section; FiLM generation and backbone learning are off whatever it says.
        spec: the learner's registry entry.
        frame_size: input frame side.
        finetune: steps, optimizer and LITE settings of personalization.
        bf16: run the backbone under bf16 autocast.
        seed: of the LITE draws of each personalization.
    """

    def __init__(
        self,
        model: ModelConfig,
        spec: LearnerSpec,
        frame_size: int,
        finetune: FinetuneConfig,
        bf16: bool = False,
        seed: int = 0,
        buckets: Buckets = Buckets(),
    ) -> None:
        model = dataclasses.replace(model, film=False, learn_backbone=False)
        super().__init__(model, spec, frame_size, bf16, buckets)
        self.tune_film = spec.tune_film
        self.finetune = finetune
        self.style = model.style
        self.seed = seed  # of LITE's draws: a personalization is reproducible

    def tuned_names(self) -> list[str]:
        """Names (inside the backbone's network) of the parameters tuned per task: FiLM layers' weight and bias."""
        if not self.tune_film:
            return []
        return [f"{layer}.{p}" for layer, _ in self.backbone.film_layers for p in ("weight", "bias")]

    # -- personalization ---------------------------------------------------------------------------------------
    def progress_kinds(self) -> tuple[str, ...]:
        return ("tune",) if self.tune_film else ("encode", "tune")

    def personalize(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        way: int,
        chunk_size: int = 256,
        progress: Progress | None = None,
    ) -> Personalized:
        """A personal recognizer from context clips ``[N, L, 3, S, S]`` (uint8) and labels ``[N]``; ``progress``
        hears of the frames encoded (``encode``, ``finetuner`` only) and of each gradient step (``tune``)."""
        # Callers may hold inference mode or no_grad (evaluation); gradient steps need autograd back.
        with torch.inference_mode(False), torch.enable_grad():
            labels = labels.to(self.device).long()
            if self.tune_film:
                return self._tune_film(clips, labels, way, chunk_size, progress)
            return self._tune_head(clips, labels, way, chunk_size, progress)

    def _stepped(self, progress: Progress | None) -> Iterator[int]:
        """The step numbers, telling ``progress`` of each step done (and of step 0 before the first)."""
        steps = self.finetune.steps
        if progress is None:
            yield from range(steps)
            return
        progress(Step("tune", 0, steps))
        for step in range(steps):
            yield step
            progress(Step("tune", step + 1, steps))

    def _start(self, features: torch.Tensor, labels: torch.Tensor, way: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.head.fit(features.detach(), labels, way)
        return weight.requires_grad_(), bias.requires_grad_()

    def _tune_head(
        self, clips: torch.Tensor, labels: torch.Tensor, way: int, chunk: int, progress: Progress | None
    ) -> Personalized:
        features_of = counting(lambda c: self.clip_features(c, None), progress, "encode", clips)
        with torch.no_grad():  # the features never change: one backbone pass per context frame
            features = torch.cat([features_of(c) for c in clips.split(chunk)])
        weight, bias = self._start(features, labels, way)
        optimizer = make_optimizer([weight, bias], [], self.finetune, self.style)
        for _ in self._stepped(progress):
            loss = F.cross_entropy(self.head.logits(features, (weight, bias)), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        self._check_converged([weight, bias])
        return Personalized(self.backbone, self.head, None, (weight.detach(), bias.detach()), way, self.bf16)

    def _check_converged(self, tensors: list[torch.Tensor]) -> None:
        """Stop, naming the settings, when the steps diverged: a recognizer of NaN weights answers nothing (every
        confidence NaN, chance-level scores that look normal)."""
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            return
        cfg = self.finetune
        raise OrbitLiteError(f"personalization diverged (weights became NaN or infinite) with finetune.lr={cfg.lr:g} "
                             f"over {cfg.steps} {cfg.optimizer} steps: lower finetune.lr (default "
                             f"{FinetuneConfig.lr:g})")  # fmt: skip

    def tuned_clip_features(self, clips: torch.Tensor, tuned: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-clip features ``[n, D]`` with the tuned norm-layer parameters in place of the backbone's."""
        frames = clips if clips.dim() == 4 else clips.flatten(0, 1)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with autocast:
            features = self.backbone.forward_replacing(frames.to(self.device, non_blocking=True), tuned).float()
        return features.view(len(clips), -1, features.shape[-1]).mean(1)

    def film_step_gradient(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        head: tuple[torch.Tensor, torch.Tensor],
        tuned: dict[str, torch.Tensor],
        chunk: int,
        generator: torch.Generator | None = None,
    ) -> None:
        """Accumulate one step's gradient of the mean cross-entropy over the context clips into ``.grad`` of the
        head ``(W, b)`` and the tuned tensors: LITE (H random clips, scaled by N/H) when the set has more than H
        clips, else the exact gradient in chunks of ``finetune.batch_size`` clips, each weighted by its share."""
        n, cfg = len(clips), self.finetune
        if cfg.lite and cfg.h < n:
            features = lite_forward(
                lambda c: self.tuned_clip_features(c, tuned), clips, h=cfg.h, chunk_size=chunk, generator=generator
            )
            F.cross_entropy(self.head.logits(features, head), labels).backward()
            return
        for start in range(0, n, cfg.batch_size):
            part = slice(start, start + cfg.batch_size)
            logits = self.head.logits(self.tuned_clip_features(clips[part], tuned), head)
            (F.cross_entropy(logits, labels[part]) * (len(logits) / n)).backward()

    def _tune_film(
        self, clips: torch.Tensor, labels: torch.Tensor, way: int, chunk: int, progress: Progress | None
    ) -> Personalized:
        net = self.backbone.net
        tuned = {name: net.get_parameter(name).detach().clone().requires_grad_() for name in self.tuned_names()}
        n, cfg = len(clips), self.finetune
        weight = torch.zeros(way, self.backbone.feature_dim, device=self.device, requires_grad=True)
        bias = torch.zeros(way, device=self.device, requires_grad=True)
        self.head.fit(weight.new_zeros(n, self.backbone.feature_dim), labels, way)  # checks the labels
        optimizer = make_optimizer([weight, bias], list(tuned.values()), cfg, self.style)
        generator = torch.Generator().manual_seed(self.seed)
        for _ in self._stepped(progress):
            self.film_step_gradient(clips, labels, (weight, bias), tuned, chunk, generator)
            optimizer.step()
            optimizer.zero_grad()
        self._check_converged([weight, bias, *tuned.values()])
        backbone = copy.deepcopy(self.backbone)  # the user's own backbone: the tuned values written in
        with torch.no_grad():
            for name, value in tuned.items():
                backbone.net.get_parameter(name).copy_(value)
        backbone.requires_grad_(False)
        values = sum(t.numel() for t in tuned.values())
        return Personalized(backbone, self.head, None, (weight.detach(), bias.detach()), way, self.bf16, values)


def why_nothing_to_meta_train(learner: str) -> str:
    return (
        f"learner {learner!r} has nothing to meta-train: it personalizes a pretrained backbone by gradient steps on "
        "each user's context set; run `orbit-lite personalize` or `orbit-lite evaluate` with --config instead"
    )


__all__ = ["FineTuner", "make_optimizer", "why_nothing_to_meta_train"]
