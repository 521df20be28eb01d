"""TensorBoard event files for a training run, written from the same records as metrics.jsonl.

Optional: the ``tensorboard`` package (``pip install 'orbit-lite[tensorboard]'``). ``train.tensorboard`` says
whether to write them: ``auto`` when the package is installed, ``on`` (an error without it), ``off``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from orbit_lite.errors import OrbitLiteError

FOLDER = "tensorboard"  # inside the run folder
# metrics.jsonl key -> TensorBoard tag, per record type
TAGS = {
    "train": {
        "loss": "train/loss",
        "accuracy": "train/accuracy",
        "lr": "train/lr",
        "tasks_per_s": "train/tasks_per_s",
        "memory_mb": "train/memory_mb",
    },
    "validation": {"frame_accuracy": "validation/frame_accuracy", "ci95": "validation/frame_accuracy_ci95"},
}


def installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def wanted(setting: str) -> bool:
    """Whether to write event files under ``train.tensorboard=setting``; ``on`` without the package is an error."""
    if setting == "on" and not installed():
        raise OrbitLiteError(
            "train.tensorboard=on needs the tensorboard package: pip install 'orbit-lite[tensorboard]'"
            " (or set train.tensorboard=auto or off)"
        )
    return setting == "on" or (setting == "auto" and installed())


class TensorBoardLog:
    """Writes each metrics record as scalars at its optimizer step.

    Args:
        run_dir: the run folder; events go to ``run_dir/tensorboard``.
        resume_step: the step a resumed run continues from: events logged after it by the interrupted run are hidden
            (TensorBoard's purge_step), as metrics.jsonl's lines after the checkpoint are cut.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(run_dir / FOLDER), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        for key, tag in TAGS.get(record.get("type", ""), {}).items():
            if step is not None and isinstance(record.get(key), (int, float)):
                self.writer.add_scalar(tag, record[key], global_step=step)
        self.writer.flush()  # a crash loses no logged record, as with metrics.jsonl

    def close(self) -> None:
        self.writer.close()
