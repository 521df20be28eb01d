"""Help a person can read: every value named by what it is.

Typer names an option's value by its Python type (``<list[Path]>``, ``<str>``) and puts required arguments in
braces (``{REF.pth}``). :class:`ReadableCommand` names every value by what it is (``--config RECIPE.yaml``,
``--set KEY=VALUE``, ``--device auto|cpu|cuda|mps``); the README's command table is written from the same objects
(:mod:`orbit_lite.cli.help`).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand

# typer carries its own copy of click; its parameters are told apart by their kind ("option", "argument"), not class

# What an option's value is, by option name; per command where the same name means different things.
METAVARS: dict[str, str] = {
    "--data": "ROOT",
    "--config": "RECIPE.yaml",
    "--set": "KEY=VALUE",
    "--checkpoint": "CKPT.pt",
    "--model": "MODEL.pt",
    "--device": "auto|cpu|cuda|mps",
    "--users": "P1,P2,...",
    "--user": "ID",
    "--videos": "DIR",
    "--label": "OBJECT",
    "--csv": "FILE.csv",
    "--tasks": "N",
    "--seed": "N",
    "--frame-size": "N",
    "--backbone": "NAME",
    "--store": "DIR",
    "--host": "ADDRESS",
}
OUT_METAVARS = {"train": "RUN", "evaluate": "DIR", "personalize": "MODEL.pt", "export": "FILE.onnx",
                "import-orbit": "CKPT.pt"}  # fmt: skip


class ReadableArgument(TyperArgument):
    """An argument shown by its name alone: ``INPUT...`` and ``[NAME]``, not ``{REF.pth}`` or ``REF.pth <path>``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class ReadableCommand(TyperCommand):
    """A command whose help names every value by what it is (:data:`METAVARS`, then the choices, then the type)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.__class__ = ReadableArgument
                if param.metavar is None:
                    param.metavar = param.name.upper()
            elif param.param_type_name == "option" and not param.is_flag and param.metavar is None:
                param.metavar = metavar_of(self.name or "", param)


def metavar_of(command: str, option: Any) -> str:
    name = max(option.opts, key=len)
    if name == "--out":
        return OUT_METAVARS.get(command, "PATH")
    if name in METAVARS:
        return METAVARS[name]
    kind = option.type_descriptor
    if kind.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in kind.choices or ())
    if kind.is_path:
        return "PATH"
    return {int: "N", float: "X"}.get(kind.annotation, "TEXT")
