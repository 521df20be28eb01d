"""Counts, taken on any device, that predict what a piece of work costs a GPU: host syncs and aten calls.

On a GPU the host queues kernels and runs ahead; it stops and waits whenever Python needs a value that lives on the
device: ``.item()``, ``float(t)``, ``.tolist()``, ``.cpu()``, ``if t:``, or an op whose output size depends on the
values (``nonzero``, boolean-mask indexing, ``unique``). Each such wait drains the queue and leaves the GPU idle
while Python prepares the next kernels. On the CPU nothing waits, so a CPU run cannot time these; it can count them.

:class:`SyncCounter` follows which tensors would live on the device (the model's parameters and buffers, anything
moved with ``.to(device)`` or, on a GPU, made with ``device=``, and everything computed from them) and counts the
reads of their values. A read of a tensor that stays on the host (a label tensor from the loader, Adam's step
counter) is no sync and is not counted. On the CPU the device *is* the host, so ``.to(device)`` there marks a tensor
as on the device rather than counting as a copy back; ``.cpu()``, ``.tolist()`` and ``.numpy()`` of such a tensor
count.

:class:`AtenCounter` counts the aten operators dispatched (each is one or more kernel launches on a GPU).
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Reading a value on the host: each waits for every kernel queued before it.
_READS = frozenset(
    {
        "item",
        "tolist",
        "cpu",
        "numpy",
        "__float__",
        "__int__",
        "__bool__",
        "__index__",
        "__complex__",
        "__format__",
        "equal",
        "allclose",
    }
)
# Output size depends on the values: the host must learn it before it can allocate the output.
_SIZED_BY_VALUES = frozenset({"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive"})
_FACTORIES = frozenset(
    {
        "zeros",
        "ones",
        "empty",
        "full",
        "tensor",
        "as_tensor",
        "arange",
        "linspace",
        "rand",
        "randn",
        "randint",
        "eye",
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
    }
)


def _name(func: Any) -> str:
    return getattr(func, "__name__", str(func))


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class SyncCounter(TorchFunctionMode):
    """Counts the calls that would make the host wait for ``device``; use as a context manager.

    Args:
        on_device: tensors already on the device (a model's parameters and buffers).
        device: where the work runs (``.to(device)`` and ``device=`` put a tensor there).

    Attributes:
        counts: ``{call name: times}`` of the counted calls, e.g. ``{"item": 2, "nonzero": 1}``.
    """

    def __init__(self, on_device: list[torch.Tensor], device: torch.device) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.counts: Counter[str] = Counter()
        self._marked: dict[int, weakref.ref] = {}  # by identity: tensors compare by value, so no WeakSet
        for t in on_device:
            self._mark(t)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _mark(self, t: torch.Tensor) -> None:
        key = id(t)
        self._marked[key] = weakref.ref(t, lambda _ref: self._marked.pop(key, None))

    def _is_marked(self, t: torch.Tensor) -> bool:
        ref = self._marked.get(id(t))
        return ref is not None and ref() is t

    def _on_device(self, tensors: list[torch.Tensor]) -> bool:
        return any(self._is_marked(t) for t in tensors)

    def _to_device(self, func: Any, args: tuple, kwargs: dict) -> bool:
        """``.to(device)`` / ``.cuda()`` / a factory given ``device=``: the result lives on the device."""
        name = _name(func)
        if name == "cuda":
            return True
        if name == "to":
            targets = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
            return any(torch.device(a).type == self.device.type for a in targets)
        # On the CPU a factory's device= cannot tell the host (Adam's step counters: host values by design) from the
        # device, so only computation from device tensors marks there; on a GPU the device says it.
        device = kwargs.get("device")
        return (
            name in _FACTORIES
            and device is not None
            and self.device.type != "cpu"
            and torch.device(device).type == self.device.type
        )

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = _tensors((args, kwargs))
        on_device = self._on_device(inputs)
        name = _name(func)
        if on_device and (name in _READS or name in _SIZED_BY_VALUES):
            self.counts[name] += 1
        elif on_device and name == "__getitem__" and self._mask_index(args):
            self.counts["boolean index"] += 1
        elif on_device and name == "repeat_interleave" and len(_tensors(args[1:])) + len(_tensors(kwargs)) > 0:
            self.counts["repeat_interleave"] += 1
        out = func(*args, **kwargs)
        if (on_device and name not in ("cpu", "numpy", "tolist")) or self._to_device(func, args, kwargs):
            for t in _tensors(out):
                self._mark(t)
        return out

    def _mask_index(self, args: tuple) -> bool:
        index = args[1] if len(args) > 1 else None
        return any(t.dtype == torch.bool and self._is_marked(t) for t in _tensors(index))


class AtenCounter(TorchDispatchMode):
    """Counts the aten operators dispatched (forward, backward and optimizer alike); use as a context manager."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))
