"""Classifier heads: turn labelled context features into a state, then score query features against it.

A head is split in two so that a personalized model is a value: :meth:`Head.fit` maps context features ``[N, D]`` and
labels ``[N]`` to a :data:`HeadState` (a tuple of tensors), and :meth:`Head.logits` scores query features ``[M, D]``
against that state, giving ``[M, way]``. The state stays on the autograd graph: the reference code wrapped it in
``nn.Parameter``, which detaches it, so no gradient reached the context path; here it is never
wrapped, detached or read through ``.data``.

All head maths runs in at least float32 with autocast switched off: the cost is small (``K`` is at most ~15), and the
Mahalanobis covariance, Cholesky and triangular solves are not safe in bf16.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.head_export import CosineLogits, LinearLogits, MahalanobisLogits, ProtoLogits

HeadState = tuple[Tensor, ...]


def _class_counts(labels: Tensor, way: int) -> Tensor:
    """Examples per class, ``[way]`` int64 on ``labels``' device; raises ``ValueError`` for a label out of range or an
    empty class. The checks read values: callers pass the labels as the loader made them, on the host, where reading
    them does not make the host wait for the GPU."""
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)} and {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= way):
        raise ValueError(f"labels must lie in [0, {way}), got [{int(labels.min())}, {int(labels.max())}]")
    counts = torch.bincount(labels.long(), minlength=way)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"class {missing[0]} has no context example (way={way}; empty classes: {missing})")
    return counts


def class_means(features: Tensor, labels: Tensor, way: int, counts: Tensor | None = None) -> Tensor:
    """Mean feature of every class.

    Args:
        features: Context features ``[N, D]``.
        labels: Class of each row, ``[N]`` integers in ``[0, way)``, on any device (best on the host: see
            :func:`_class_counts`).
        way: Number of classes ``K``.
        counts: :func:`_class_counts` of ``labels`` when the caller has it already.

    Returns:
        Class means ``[K, D]`` in the dtype of ``features``, differentiable with respect to ``features``.

    Raises:
        ValueError: A class has no example, or a label is out of range.
    """
    counts = _class_counts(labels, way) if counts is None else counts
    device = features.device
    labels, counts = labels.to(device, non_blocking=True), counts.to(device, non_blocking=True)
    sums = features.new_zeros(way, features.shape[-1]).index_add(0, labels.long(), features)
    return sums / counts.unsqueeze(1).to(features.dtype)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half types, float64 kept as is."""
    return torch.promote_types(x.dtype, torch.float32)


def _no_autocast(x: Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


class Head(nn.Module):
    """Base class: ``fit`` context features into a state, score queries with ``logits``.

    The temperature ``scale`` multiplies the logits. With ``learn_scale`` it is the parameter ``log_scale`` (kept in
    log space so it stays positive); otherwise it is the buffer ``scale``. Either way it is in the ``state_dict``.
    """

    name: ClassVar[str] = ""
    default_scale: ClassVar[float] = 1.0

    def __init__(
        self, feature_dim: int, scale: float | None = None, learn_scale: bool = False, style: str = "orbit_lite"
    ) -> None:
        super().__init__()
        scale = self.default_scale if scale is None else float(scale)
        if not scale > 0 or not math.isfinite(scale):
            raise OrbitLiteError(f"head scale must be a positive number, got {scale}; fix model.logit_scale")
        if style not in ("orbit_lite", "reference"):
            raise OrbitLiteError(f"unknown head style {style!r}; fix model.style")
        self.feature_dim = feature_dim
        self.learn_scale = learn_scale
        self.style = style  # "reference": the ORBIT reference code's variant where it differs (Versa, Mahalanobis)
        if learn_scale:
            self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        else:
            self.register_buffer("scale", torch.tensor(scale))

    def temperature(self) -> Tensor:
        """The current scale, a 0-dim tensor."""
        return self.log_scale.exp() if self.learn_scale else self.scale

    def _check(self, features: Tensor, what: str) -> None:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"{what} must be [N, {self.feature_dim}], got {tuple(features.shape)}")

    def fit(self, features: Tensor, labels: Tensor, way: int) -> HeadState:
        """Build the head state from the context set.

        Args:
            features: Context features ``[N, D]``.
            labels: ``[N]`` integers in ``[0, way)``; every class must occur.
            way: Number of classes ``K``.

        Returns:
            The state that :meth:`logits` takes.
        """
        raise NotImplementedError

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        """Score query features.

        Args:
            query: Query features ``[M, D]``.
            state: What :meth:`fit` returned.

        Returns:
            Logits ``[M, K]``, in at least float32.
        """
        raise NotImplementedError

    def forward(self, query: Tensor, state: HeadState) -> Tensor:
        """Same as :meth:`logits`, so that module hooks see the call."""
        return self.logits(query, state)

    def exportable(self, state: HeadState) -> nn.Module:
        """The logits of this head with ``state`` as a standalone module (features ``[B, D]`` -> logits ``[B, K]``,
        on the CPU, float32), in operations an ONNX export keeps."""
        raise OrbitLiteError(f"no ONNX export for the {self.name!r} head")

    def reference_keys(self) -> dict[str, str]:
        """The ORBIT reference code's state_dict keys of this head's own parameters -> this head's keys."""
        return {}

    def extra_repr(self) -> str:
        with torch.no_grad():
            scale = self.temperature().item()
        return f"feature_dim={self.feature_dim}, scale={scale:g}, learn_scale={self.learn_scale}"


class ProtoHead(Head):
    """ProtoNets with Euclidean distance: ``logits_c(x) = -scale * ||x - mu_c||^2``. State: ``(means [K, D],)``."""

    name = "proto"
    default_scale = 1.0

    def fit(self, features: Tensor, labels: Tensor, way: int) -> HeadState:
        self._check(features, "context features")
        with _no_autocast(features):
            return (class_means(features.to(_compute_dtype(features)), labels, way),)

    def exportable(self, state: HeadState) -> nn.Module:
        return ProtoLogits(float(self.temperature()), means=state[0])

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        self._check(query, "query features")
        (means,) = state
        with _no_autocast(query):
            x = query.to(means.dtype)
            # ||x||^2 - 2 x.mu + ||mu||^2 avoids an [M, K, D] difference tensor; rounding can make it slightly negative.
            sq = x.pow(2).sum(1, keepdim=True) - 2 * x @ means.T + means.pow(2).sum(1)
            return -self.temperature() * sq.clamp_min(0)


class CosineProtoHead(ProtoHead):
    """ProtoNets with cosine similarity: ``logits_c(x) = scale * cos(x, mu_c)``. State: ``(means [K, D],)``, the
    same prototypes as :class:`ProtoHead`."""

    name = "proto_cosine"
    default_scale = 32.0

    def exportable(self, state: HeadState) -> nn.Module:
        return CosineLogits(float(self.temperature()), means=state[0])

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        self._check(query, "query features")
        (means,) = state
        with _no_autocast(query):
            x = F.normalize(query.to(means.dtype), dim=1)
            return self.temperature() * (x @ F.normalize(means, dim=1).T)


def _class_scatter(centered: Tensor, labels: Tensor, counts: Tensor, largest: int) -> Tensor:
    """Per-class scatter matrices ``sum_i d_i d_i^T``, ``[K, D, D]``, from centred rows ``[N, D]``.

    Rows are packed into a zero-padded ``[K, n_max, D]`` batch, so one batched matmul costs about ``N * D^2`` for
    balanced classes (a one-hot weighting would cost ``K * N * D^2``). ``largest``: the largest class's count.
    """
    way, n, dim = counts.numel(), centered.shape[0], centered.shape[1]
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order].long()
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=labels.device) - starts[sorted_labels]
    padded = centered.new_zeros(way, largest, dim).index_put((sorted_labels, rank), centered[order])
    return padded.transpose(1, 2) @ padded


class MahalanobisHead(Head):
    """Simple CNAPs: squared Mahalanobis distance under a regularized per-class covariance.

    ``Sigma'_c = lambda_c Sigma_c + (1 - lambda_c) Sigma_task + I`` with ``lambda_c = n_c / (n_c + 1)``, unbiased
    covariances, and ``logits_c(x) = -scale * (x - mu_c)^T Sigma'_c^{-1} (x - mu_c)``. State:
    ``(means [K, D], cholesky [K, D, D])``, the lower Cholesky factors of ``Sigma'_c``; distances come from triangular
    solves, never an explicit inverse. Always computed (and returned) in at least float32, even under autocast.

    A class with one context example has a zero scatter matrix. orbit-lite gives it a zero class covariance; the
    ``reference`` style reproduces the reference code, whose covariance of a single vector is the (unbiased) variance of
    its D entries added to every matrix entry, so that its checkpoints give its predictions.
    """

    name = "mahalanobis"
    default_scale = 1.0

    def fit(self, features: Tensor, labels: Tensor, way: int) -> HeadState:
        self._check(features, "context features")
        with _no_autocast(features):
            x = features.to(_compute_dtype(features))
            n, dim = x.shape
            host_counts = _class_counts(labels, way)
            means = class_means(x, labels, way, host_counts)
            labels = labels.to(x.device, non_blocking=True)
            counts = host_counts.to(x.device, x.dtype, non_blocking=True)
            task_centered = x - x.mean(0)
            task_cov = task_centered.T @ task_centered / max(n - 1, 1)  # zero matrix when N == 1
            # A class with one example has a zero scatter matrix, so dividing by max(n_c - 1, 1) gives it a zero class
            # covariance (see the class docstring for the reference style).
            scatter = _class_scatter(x - means[labels.long()], labels, counts.long(), int(host_counts.max()))
            class_cov = scatter / (counts - 1).clamp_min(1).view(-1, 1, 1)
            if self.style == "reference":  # a one-example class's mean is its example; its spread goes everywhere
                spread = torch.where(counts == 1, means.var(dim=1), torch.zeros_like(counts))
                class_cov = class_cov + spread.view(-1, 1, 1)
            lam = (counts / (counts + 1)).view(-1, 1, 1)
            eye = torch.eye(dim, dtype=x.dtype, device=x.device)
            sigma = lam * class_cov + (1 - lam) * task_cov + eye  # + I keeps every Sigma'_c positive definite
            return means, torch.linalg.cholesky(sigma)

    def exportable(self, state: HeadState) -> nn.Module:
        return MahalanobisLogits(float(self.temperature()), state[0], state[1])

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        self._check(query, "query features")
        means, chol = state
        with _no_autocast(query):
            x = query.to(means.dtype)
            # [K, D, M]: each class whitens the query differences with its own factor; this is the largest tensor, so
            # callers bound memory by chunking queries. Never [M, K, D, D].
            diff = x.T.unsqueeze(0) - means.unsqueeze(2)
            white = torch.linalg.solve_triangular(chol, diff, upper=False)
            return -self.temperature() * white.pow(2).sum(1).T


def _versa_mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, out))


class VersaHead(Head):
    """CNAPs / Versa: class weights generated from the class means by small networks.

    ``w_c = mu_c + f_w(mu_c)`` (residual MLP ``D -> D``), ``b_c = f_b(mu_c)`` (MLP ``D -> 1``, no residual), and
    ``logits = scale * (x W^T + b)``. State: ``(W [K, D], b [K])``. Unlike the reference code, ``f_w`` and ``f_b``
    receive gradients. ``f_b``'s hidden width is ``D``; the ``reference`` style's is 1, as in the
    reference code (``D -> 1 -> 1 -> 1``).
    """

    name = "versa"
    default_scale = 1.0

    def __init__(
        self, feature_dim: int, scale: float | None = None, learn_scale: bool = False, style: str = "orbit_lite"
    ) -> None:
        super().__init__(feature_dim, scale, learn_scale, style)
        self.f_w = _versa_mlp(feature_dim, feature_dim, feature_dim)
        self.f_b = _versa_mlp(feature_dim, 1 if style == "reference" else feature_dim, 1)

    def fit(self, features: Tensor, labels: Tensor, way: int) -> HeadState:
        self._check(features, "context features")
        with _no_autocast(features):
            means = class_means(features.to(self.f_w[0].weight.dtype), labels, way)
            return means + self.f_w(means), self.f_b(means).squeeze(1)

    def exportable(self, state: HeadState) -> nn.Module:
        return LinearLogits(float(self.temperature()), weight=state[0], bias=state[1])

    def reference_keys(self) -> dict[str, str]:
        # the reference's linear1..3 are the Sequential's 0, 2, 4 (ELUs between)
        return {
            f"classifier.{ref}.linear{j + 1}.{p}": f"{ours}.{2 * j}.{p}"
            for ref, ours in (("weight_processor", "f_w"), ("bias_processor", "f_b"))
            for j in range(3)
            for p in ("weight", "bias")
        }

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        self._check(query, "query features")
        weight, bias = state
        with _no_autocast(query):
            return self.temperature() * (query.to(weight.dtype) @ weight.T + bias)


class LinearHead(Head):
    """FineTuner's linear classifier: ``logits = scale * (x W^T + b)``. State: ``(W [K, D], b [K])``.

    The weights are learned per task by gradient steps (:mod:`orbit_lite.learners.finetune`), not computed from the
    context in one pass: :meth:`fit` gives the starting point, zeros, as in the reference's ``LinearClassifier``.
    """

    name = "linear"
    default_scale = 1.0

    def fit(self, features: Tensor, labels: Tensor, way: int) -> HeadState:
        self._check(features, "context features")
        _class_counts(labels, way)
        dtype = _compute_dtype(features)
        return features.new_zeros(way, self.feature_dim, dtype=dtype), features.new_zeros(way, dtype=dtype)

    def exportable(self, state: HeadState) -> nn.Module:  # a FineTuner's tuned norm layers are in its backbone
        return LinearLogits(float(self.temperature()), weight=state[0], bias=state[1])

    def logits(self, query: Tensor, state: HeadState) -> Tensor:
        self._check(query, "query features")
        weight, bias = state
        with _no_autocast(query):
            return self.temperature() * F.linear(query.to(weight.dtype), weight, bias)


HEADS: dict[str, type[Head]] = {
    cls.name: cls for cls in (ProtoHead, CosineProtoHead, MahalanobisHead, VersaHead, LinearHead)
}


def create_head(
    name: str, feature_dim: int, scale: float | None = None, learn_scale: bool = False, style: str = "orbit_lite"
) -> Head:
    """Build a registered head by name.

    Args:
        name: A key of :data:`HEADS`.
        feature_dim: Feature size ``D``.
        scale: Logit temperature; ``None`` takes the head's default (32 for ``proto_cosine``, else 1).
        learn_scale: Make the scale a learnable parameter (in log space).
        style: ``orbit_lite`` or ``reference`` (the reference code's Versa and Mahalanobis variants).

    Raises:
        OrbitLiteError: Unknown name, or a scale that is not positive.
    """
    if name not in HEADS:
        raise OrbitLiteError(f"unknown head {name!r}; available: {', '.join(HEADS)}")
    cls = HEADS[name]
    return cls(feature_dim, scale=cls.default_scale if scale is None else scale, learn_scale=learn_scale, style=style)
