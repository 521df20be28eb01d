"""A few-shot learner: backbone (optionally FiLM-adapted from a set encoder's task embedding) + classifier head.

``personalize(context) -> Personalized`` turns a user's context clips into a personal recognizer, and
``Personalized.predict(clips) -> logits``. ``train_task`` runs one meta-training task with LITE on the context set
and a bounded-memory, exact pass over the query set:

1. support path: task embedding and context features through :func:`orbit_lite.lite.lite_forward` (H rows with
   gradient, scaled by N/H), then the head's state (prototypes, or means and covariance factors);
2. query path: query clips in chunks against *detached copies* of the head state and FiLM parameters; each chunk's
   loss is back-propagated at once, so only one chunk's activations are alive at a time, and the copies collect
   the gradient with respect to the state;
3. one backward pass from the head state and FiLM parameters into the support path with those collected gradients.

By the chain rule this is the gradient of the whole task's loss (mean cross-entropy over every query clip), with
the LITE estimate on the support path and the exact gradient on the query path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from orbit_lite.config import LiteConfig, ModelConfig
from orbit_lite.lite import NoGradRows, draw_order, lite_forward
from orbit_lite.models.backbones import Backbone, create_backbone
from orbit_lite.models.film import FilmGenerator
from orbit_lite.models.heads import Head, HeadState, create_head
from orbit_lite.models.set_encoder import SetEncoder
from orbit_lite.progress import Progress, counting
from orbit_lite.shapes import Buckets, run_bucketed

Film = dict[str, tuple[torch.Tensor, torch.Tensor]]


# Where a learner's model can come from (see ``orbit_lite.engine.model``): a training checkpoint of it, a recipe
# alone (pretrained backbone weights, nothing meta-trained), or another checkpoint's backbone under it.
SOURCES = ("checkpoint", "recipe", "backbone")


@dataclass(frozen=True)
class LearnerSpec:
    """What a learner name means: its class, its head, which parts adapt or learn, and where its model may come
    from (a subset of :data:`SOURCES`)."""

    cls: type[Learner]
    head: str
    film: bool
    learn_backbone: bool
    description: str
    sources: tuple[str, ...]
    tune_film: bool = False  # FineTuner + FiLM: the FiLM layers' own affines are tuned per task

    @property
    def meta_trained(self) -> bool:
        """Has parts that meta-training learns: only then is there a training checkpoint of it."""
        return "checkpoint" in self.sources

    @property
    def from_pretrained(self) -> bool:
        """May personalize straight from pretrained weights (a recipe, no checkpoint)."""
        return "recipe" in self.sources


@dataclass
class TaskStats:
    """A task's sums, left on the device where they were computed: reading one makes the host wait for the GPU, so
    the training loop reads a whole optimizer step's at once (:func:`read_stats`)."""

    loss_sum: torch.Tensor  # 0-dim float32: summed cross-entropy over the task's query clips
    correct: torch.Tensor  # 0-dim int64: query clips classified correctly
    queries: int

    @property
    def loss(self) -> float:
        """Mean cross-entropy over the query clips (reads the device)."""
        return float(self.loss_sum) / self.queries

    @property
    def accuracy(self) -> float:
        """Fraction of query clips classified correctly (reads the device)."""
        return int(self.correct) / self.queries


def read_stats(stats: Sequence[TaskStats]) -> list[tuple[float, float]]:
    """``(loss, accuracy)`` of each task, equal to each one's ``.loss`` and ``.accuracy``, in one read of the device."""
    if not stats:
        return []
    sums = torch.stack([v for s in stats for v in (s.loss_sum.double(), s.correct.double())]).tolist()
    return [(sums[2 * i] / s.queries, int(sums[2 * i + 1]) / s.queries) for i, s in enumerate(stats)]


def _copy(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def _frames(clips: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``[n, L, 3, S, S]`` or ``[n, 3, S, S]`` -> frames ``[n * L, 3, S, S]`` and L."""
    if clips.dim() == 4:
        return clips, 1
    return clips.flatten(0, 1), clips.shape[1]


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def encode_clips(backbone: Backbone, clips: torch.Tensor, film: Film | None, bf16: bool = False) -> torch.Tensor:
    """Per-clip features ``[n, D]`` (float32): the backbone's frame features averaged over each clip."""
    device = next(backbone.parameters()).device
    frames, length = _frames(clips)
    with _autocast(device, bf16):
        features = backbone(frames.to(device, non_blocking=True), film).float()
    return features.view(-1, length, features.shape[-1]).mean(1)


class Learner(nn.Module):
    """What every learner is: a backbone and a head that :meth:`personalize` a user's context clips into a
    :class:`Personalized` recognizer. Learners without meta-trained parts (the FineTuners) are only this; a
    :class:`FewShotLearner` is also meta-trained.

    Args:
        model: the model section of the config; empty fields take ``spec``'s values.
        spec: the learner's registry entry.
        frame_size: input frame side (some backbones are built for one size).
        bf16: run the networks under bf16 autocast.
        buckets: the batch sizes the backbone and set encoder may see (the config's ``lite.bucket*``).
    """

    def __init__(
        self, model: ModelConfig, spec: LearnerSpec, frame_size: int, bf16: bool = False, buckets: Buckets = Buckets()
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(model.backbone, model.weights, frame_size, model.style, buckets)
        self.backbone.requires_grad_(False)
        self._build_adaptation(model, spec)  # between backbone and head: the order parameters are registered in
        scale = model.logit_scale or None
        self.head = create_head(
            model.head or spec.head, self.backbone.feature_dim, scale, model.learn_scale, style=model.style
        )
        self.bf16 = bf16  # bf16 autocast of the backbone and set encoder

    def _build_adaptation(self, model: ModelConfig, spec: LearnerSpec) -> None:
        """The parts that adapt the backbone to a task (none here)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def clip_features(self, clips: torch.Tensor, film: Film | None) -> torch.Tensor:
        """Per-clip features ``[n, D]``: frame features averaged over the clip."""
        return encode_clips(self.backbone, clips, film, self.bf16)

    def personalize(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        way: int,
        chunk_size: int = 256,
        progress: Progress | None = None,
    ) -> Personalized:
        """A personal recognizer from context clips ``[N, L, 3, S, S]`` (uint8) and labels ``[N]``; ``progress``
        hears of the steps of :meth:`progress_kinds`, in that order."""
        raise NotImplementedError

    def progress_kinds(self) -> tuple[str, ...]:
        """The kinds of :class:`orbit_lite.progress.Step` that :meth:`personalize` reports, in order."""
        raise NotImplementedError


class FewShotLearner(Learner):
    """A meta-learner: backbone + optional FiLM (generator and set encoder) + head, trained task by task with
    :meth:`train_task`, and personalized in one forward pass."""

    def _build_adaptation(self, model: ModelConfig, spec: LearnerSpec) -> None:
        self.film_enabled = spec.film if model.film is None else model.film
        self.learn_backbone = spec.learn_backbone if model.learn_backbone is None else model.learn_backbone
        self.backbone.requires_grad_(self.learn_backbone)
        self.set_encoder = None
        self.film = None
        if self.film_enabled:
            # The reference feeds its set encoder the backbone's normalized frames; ours has always used [-1, 1].
            frames = self.backbone.spec
            mean, std = (frames.mean, frames.std) if model.style == "reference" else ((0.5,) * 3, (0.5,) * 3)
            self.set_encoder = SetEncoder(model.set_encoder_width, style=model.style, mean=mean, std=std)
            self.film = FilmGenerator(
                self.backbone.film_layers, model.set_encoder_width, scale_only=self.backbone.film_scale_only
            )
        self.film_reg_weight = model.film_reg_weight

    def head_has_parameters(self) -> bool:
        return any(p.requires_grad for p in self.head.parameters())

    # -- pieces ------------------------------------------------------------------------------------------------
    def set_reps(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-clip set-encoder representations ``[n, E]`` (mean over a clip's frames)."""
        assert self.set_encoder is not None
        frames, length = _frames(clips)
        device = self.device
        with _autocast(device, self.bf16):
            frames = frames.to(device, non_blocking=True)
            reps = run_bucketed(self.set_encoder, frames, self.backbone.buckets, device).float()
        return reps.view(-1, length, reps.shape[-1]).mean(1)

    def _support(
        self,
        clips: torch.Tensor,
        h: int,
        chunk: int,
        generator: torch.Generator | None,
        ahead: NoGradRows | None = None,
        progress: Progress | None = None,
    ) -> tuple:
        film = None
        if self.film is not None:
            reps_of = counting(self.set_reps, progress, "adapt", clips)
            reps = lite_forward(reps_of, clips, h=h, chunk_size=chunk, generator=generator)
            film = self.film(reps.mean(0))
        features_of = counting(lambda c: self.clip_features(c, film), progress, "encode", clips)
        features = lite_forward(features_of, clips, h=h, chunk_size=chunk, generator=generator, ahead=ahead)
        return features, film

    def no_grad_rows_ahead(
        self, contexts: Sequence[torch.Tensor], lite: LiteConfig, generators: Sequence[torch.Generator | None]
    ) -> list[NoGradRows | None]:
        """The no-grad context rows of several tasks in one stream of full ``lite.chunk_size`` batches.

        Each task's :meth:`train_task` would forward its own N - H rows in chunks, the last one part-full; here the
        rows of all ``contexts`` are forwarded together, so every batch but the last is full and there are fewer
        calls. The rows are those each task's generator will draw (drawn here from a copy, so the generators are left
        as they are); the values are the same, row by row, because rows are independent (frozen normalization).
        Only learners without FiLM can: with FiLM a task's context features depend on its own set. Returns None for
        a task whose rows are all back-propagated (or every task, when the learner cannot).
        """
        if self.film is not None or not lite.enabled:
            return [None] * len(contexts)
        orders = [
            draw_order(len(c), _copy(g)) if lite.h < len(c) else None for c, g in zip(contexts, generators, strict=True)
        ]
        pieces = [(c, o[lite.h :]) for c, o in zip(contexts, orders, strict=True) if o is not None]
        values = iter(self._forward_rows(pieces, lite.chunk_size))
        return [None if o is None else NoGradRows(o, next(values)) for o in orders]

    @torch.no_grad()
    def _forward_rows(self, pieces: list[tuple[torch.Tensor, torch.Tensor]], chunk: int) -> list[torch.Tensor]:
        """Features of ``clips[rows]`` for each ``(clips, rows)``, forwarded in batches of ``chunk`` across pieces."""
        out: list[list[torch.Tensor]] = [[] for _ in pieces]
        batch: list[tuple[int, torch.Tensor]] = []  # (piece, clips) waiting to be forwarded
        waiting = 0

        def flush() -> None:
            features = self.clip_features(torch.cat([clips for _, clips in batch]), None)
            for (piece, _), part in zip(batch, features.split([len(c) for _, c in batch]), strict=True):
                out[piece].append(part)
            batch.clear()

        for i, (clips, rows) in enumerate(pieces):
            start = 0
            while start < len(rows):
                take = min(chunk - waiting, len(rows) - start)
                batch.append((i, clips[rows[start : start + take]]))
                waiting, start = waiting + take, start + take
                if waiting == chunk:
                    flush()
                    waiting = 0
        if batch:
            flush()
        return [torch.cat(parts) for parts in out]

    # -- personalization ---------------------------------------------------------------------------------------
    def progress_kinds(self) -> tuple[str, ...]:
        return ("adapt", "encode") if self.film is not None else ("encode",)

    @torch.inference_mode()
    def personalize(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        way: int,
        chunk_size: int = 256,
        progress: Progress | None = None,
    ) -> Personalized:
        """A personal recognizer from context clips ``[N, L, 3, S, S]`` (uint8) and labels ``[N]``; ``progress``
        hears of the frames through the set encoder (``adapt``, with FiLM) and the backbone (``encode``)."""
        features, film = self._support(clips, h=len(clips), chunk=chunk_size, generator=None, progress=progress)
        state = self.head.fit(features, labels, way)  # checked on the host, then moved
        return Personalized(self.backbone, self.head, film, state, way, self.bf16)

    # -- meta-training -----------------------------------------------------------------------------------------
    def train_task(
        self,
        context: torch.Tensor,
        context_labels: torch.Tensor,
        query: torch.Tensor,
        query_labels: torch.Tensor,
        way: int,
        lite: LiteConfig,
        generator: torch.Generator | None = None,
        loss_weight: float = 1.0,
        ahead: NoGradRows | None = None,
    ) -> TaskStats:
        """Accumulate the gradients of ``loss_weight * task loss + FiLM regularizer`` into ``.grad``; see module doc.

        ``ahead``: this task's no-grad context rows from :meth:`no_grad_rows_ahead` (the same values)."""
        h = lite.h if lite.enabled else len(context)
        features, film = self._support(context, h, lite.chunk_size, generator, ahead)
        state = self.head.fit(features, context_labels, way)  # checked on the host: no wait for the GPU
        state_leaves = tuple(t.detach().requires_grad_(t.requires_grad) for t in state)
        film_leaves = {
            k: (g.detach().requires_grad_(), b.detach().requires_grad_()) for k, (g, b) in (film or {}).items()
        }
        n = len(query)
        # Sums stay on the device: reading them per chunk (or per task) would stall the GPU each time.
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        query_labels = query_labels.to(self.device, non_blocking=True)
        for start in range(0, n, lite.query_chunk):
            clips = query[start : start + lite.query_chunk]
            labels = query_labels[start : start + lite.query_chunk]
            logits = self.head.logits(self.clip_features(clips, film_leaves or None), state_leaves)
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            (loss * (loss_weight / n)).backward()
            total += loss.detach()
            correct += (logits.argmax(1) == labels).sum()
        outputs, grads = [], []
        for t, leaf in zip(state, state_leaves, strict=True):
            if t.requires_grad and leaf.grad is not None:
                outputs.append(t)
                grads.append(leaf.grad)
        for key, pair in (film or {}).items():
            for t, leaf in zip(pair, film_leaves[key], strict=True):
                if leaf.grad is not None:
                    outputs.append(t)
                    grads.append(leaf.grad)
        if self.film is not None:  # once per task, not divided by tasks_per_batch
            outputs.append(self.film.regularizer() * self.film_reg_weight)
            grads.append(torch.ones((), device=self.device))
        if outputs:
            torch.autograd.backward(outputs, grads)
        return TaskStats(total, correct, n)


@dataclass
class Personalized:
    """A personal recognizer: a backbone with this user's FiLM parameters, and a head with this user's state.

    It needs neither the set encoder nor the FiLM generator, so it saves and runs on its own (``orbit_lite.personal``).
    """

    backbone: Backbone
    head: Head
    film: Film | None
    state: HeadState
    way: int
    bf16: bool = False
    tuned_values: int = 0  # backbone values tuned for this user and written into its weights (FineTuner + FiLM)

    def logits_device(self) -> torch.device:
        """Where the recognizer computes."""
        return next(self.backbone.parameters()).device

    @torch.inference_mode()
    def frame_features(self, frames: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
        """Features ``[M, D]`` of single frames ``[M, 3, S, S]`` (uint8), in chunks."""
        out = [encode_clips(self.backbone, chunk, self.film, self.bf16) for chunk in frames.split(chunk_size)]
        return torch.cat(out) if out else torch.zeros((0, self.backbone.feature_dim))

    @torch.inference_mode()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[M, way]`` of clip features ``[M, D]``."""
        return self.head.logits(features, self.state).float()

    @torch.inference_mode()
    def predict(self, clips: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
        """Logits ``[M, way]`` for clips ``[M, L, 3, S, S]`` or frames ``[M, 3, S, S]`` (uint8)."""
        out = [
            self.logits(encode_clips(self.backbone, chunk, self.film, self.bf16)) for chunk in clips.split(chunk_size)
        ]
        device = next(self.backbone.parameters()).device
        return torch.cat(out) if out else torch.zeros((0, self.way), device=device)
