"""``orbit-lite import-orbit``: a published ORBIT reference checkpoint as an orbit-lite training checkpoint."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from orbit_lite.cli.common import one_line_errors, out
from orbit_lite.import_orbit import BACKBONES, HEADS, import_reference, resolve
from orbit_lite.outputs import check_file_out, is_orbit_lite_checkpoint, writable_parent

RefLearner = Enum("RefLearner", {name: name for name in HEADS}, type=str)
RefHead = Enum("RefHead", {name: name for name in HEADS["protonets"]}, type=str)


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


@one_line_errors
def import_orbit_command(
    reference: Path = typer.Argument(..., metavar="REF.pth", help="A published ORBIT checkpoint (a state_dict)."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the orbit-lite training checkpoint."),
    learner: RefLearner = typer.Option(None, "--learner", help="The reference learner (default: from the file name)."),
    backbone: str = typer.Option(
        None,
        "--backbone",
        help=f"Its --feature_extractor: {', '.join(BACKBONES)} or orbit-lite's name for it, "
        f"{', '.join(BACKBONES.values())} (default: from the file name).",
    ),
    head: RefHead = typer.Option(None, "--head", help="ProtoNets' head (default: from the file name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Import a published ORBIT reference checkpoint as an orbit-lite training checkpoint.

    REF.pth is named orbit_cluve_<learner>[_cosine]_<backbone>_224_lite.pth. Every key is checked, nothing in the file
    is executed, and the result works with evaluate, personalize (then export) and train --set train.init=CKPT.
    """
    check_file_out(out_file, overwrite, is_orbit_lite_checkpoint("training"), "a training checkpoint")
    writable_parent(out_file)
    ref = resolve(reference, _value(learner), backbone, _value(head))
    payload, tensors = import_reference(reference, ref)
    from orbit_lite.checkpoint import save_checkpoint

    save_checkpoint(out_file, payload, "training")
    model = payload["config"]["model"]
    out.print(
        f"imported {reference.name} ({tensors} tensors): {ref.learner} on {model['backbone']}, head "
        f"{ref.head} (logit scale {model['logit_scale']:g}), reference style -> {out_file}",
        highlight=False,
    )
    out.print(
        f"next: orbit-lite evaluate --data ORBIT_ROOT --checkpoint {out_file} --out results/{out_file.stem}",
        highlight=False,
    )
