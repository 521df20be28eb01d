"""The optimizer and its learning-rate schedule, per epoch: linear warm-up from ``warmup_lr``, then constant,
multi-step or cosine decay, computed by timm's schedulers as the ORBIT reference drives them."""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.scheduler.scheduler import Scheduler

from orbit_lite.config import TrainConfig
from orbit_lite.learners import FewShotLearner


def decay_milestones(cfg: TrainConfig) -> list[int]:
    """The reference's multistep milestones: every ``decay_epochs`` strictly inside the run (none if it is longer)."""
    return list(range(cfg.decay_epochs, cfg.epochs, cfg.decay_epochs))


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Scheduler:
    warm_up = {"warmup_t": cfg.warmup_epochs, "warmup_lr_init": cfg.warmup_lr}
    span = cfg.epochs - cfg.warmup_epochs
    if cfg.scheduler == "cosine" and span > 1:  # the decay spans the epochs after the warm-up (one epoch: at lr)
        return CosineLRScheduler(optimizer, t_initial=span, lr_min=cfg.min_lr, warmup_prefix=True, **warm_up)
    milestones = decay_milestones(cfg) if cfg.scheduler == "multistep" else []  # constant: nothing to count
    # the milestones count epochs from the start, warm-up included, as the reference sets its scheduler up
    return MultiStepLRScheduler(
        optimizer, decay_t=milestones, decay_rate=cfg.decay_rate, warmup_prefix=False, **warm_up
    )


def learning_rate(epoch: int, cfg: TrainConfig) -> float:
    """The learning rate of ``epoch``. The reference steps its timm scheduler with ``epoch + 1`` after each epoch, so
    epoch 0 runs at the rate the scheduler starts with and epoch e >= 1 at the scheduler's rate for e (whose
    multistep count includes the milestones <= e + 1)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    scheduler = _scheduler(optimizer, cfg)
    if epoch > 0:
        scheduler.step(epoch)
    return optimizer.param_groups[0]["lr"]


def build_optimizer(learner: FewShotLearner, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """Two groups: the backbone (``lr * backbone_lr_scale``) and everything else; frozen parameters are left out.
    ``fused``: torch's fused Adam kernel (``train.fused_adam``; the same update within float rounding)."""
    backbone = [p for p in learner.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in learner.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr_scale": 1.0}, {"params": backbone, "lr_scale": cfg.backbone_lr_scale}]
    groups = [g for g in groups if g["params"]]
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    options = {"fused": True} if fused else {}
    return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **options)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each group at ``lr`` times its ``lr_scale`` (as timm's schedulers set it)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
