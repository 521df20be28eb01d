"""Training tasks in bulk: a sampler that deals out (user, task) draws, a Dataset that builds each with a
:class:`~orbit_lite.data.tasks.TaskBuilder`, and the DataLoader over them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from orbit_lite.config import DataConfig, SamplingConfig
from orbit_lite.data.layout import User
from orbit_lite.data.tasks import TaskBuilder, TestTask, TrainTask

log = logging.getLogger(__name__)


class UserTaskSampler(Sampler[tuple[int, int]]):
    """Yields task keys ``(epoch, item)``: each user ``tasks_per_user`` times, shuffled per epoch for training.

    The epoch travels inside the key, so worker processes (which hold copies of the dataset) need no epoch state and
    a task is the same whatever the number of workers. With several ranks, the epoch's order is cut into groups of
    ``group`` keys (one optimizer step's tasks) and rank r takes keys r, r + world, ... of every group.
    """

    def __init__(
        self,
        num_users: int,
        tasks_per_user: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        group: int = 1,
    ) -> None:
        self.num_items = num_users * tasks_per_user
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world, self.group = rank, world, max(group, 1)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Draw epoch ``epoch``'s order; skip its first ``start`` keys (to resume inside an epoch)."""
        self.epoch = epoch
        self.start = start

    def _order(self) -> np.ndarray:
        order = np.arange(self.num_items)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        return order[self.start :]

    def groups(self) -> list[tuple[int, int]]:
        """Per group of the rest of the epoch: (keys in the group, keys of this rank in it)."""
        remaining = self.num_items - self.start
        sizes = [min(self.group, remaining - s) for s in range(0, remaining, self.group)]
        return [(n, len(range(self.rank, n, self.world))) for n in sizes]

    def __len__(self) -> int:
        return sum(mine for _, mine in self.groups())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        mine = [
            int(item)
            for start in range(0, len(order), self.group)
            for item in order[start : start + self.group][self.rank :: self.world]
        ]
        return iter((self.epoch, item) for item in mine)


class UserTaskDataset(Dataset):
    """Task ``(epoch, item)`` is user ``item // tasks_per_user`` drawn with generator seed ``[seed, epoch, item]``.

    ``__getitem__`` returns None when the user cannot make a task (the loop skips it).
    """

    def __init__(
        self,
        users: Sequence[User],
        sampling: SamplingConfig,
        data: DataConfig,
        *,
        train: bool,
        tasks_per_user: int,
        seed: int = 0,
    ) -> None:
        self.users = list(users)
        self.builder = TaskBuilder(sampling, data)
        self.train = train
        self.tasks_per_user = tasks_per_user
        self.seed = seed

    def __len__(self) -> int:
        return len(self.users) * self.tasks_per_user

    def __getitem__(self, key: tuple[int, int]) -> TrainTask | TestTask | None:
        epoch, item = key
        rng = np.random.default_rng([self.seed, epoch, item])
        task = self.builder.build(self.users[item // self.tasks_per_user], rng, self.train)
        if task is not None:
            task.key = (epoch, item)
        return task


def _keep(task: TrainTask | TestTask | None) -> TrainTask | TestTask | None:
    return task


def task_loader(
    dataset: UserTaskDataset,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    group: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """One task per item; ``num_workers`` processes decode upcoming tasks while the current one is computed.

    ``loader.sampler.set_epoch(e)`` before each epoch gives a fresh, reproducible task order and draw; ``rank``,
    ``world`` and ``group`` deal each group of ``group`` tasks out across ranks (see :class:`UserTaskSampler`).
    """
    sampler = UserTaskSampler(len(dataset.users), dataset.tasks_per_user, shuffle, seed, rank, world, group)
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        collate_fn=_keep,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        pin_memory=pin_memory,  # TrainTask.pin_memory: page-locked buffers, so the copies to the GPU do not block
    )
