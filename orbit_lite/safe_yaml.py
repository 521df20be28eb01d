"""Reading a config's YAML with bounds: size, nesting depth, alias expansion, and no key written twice.

PyYAML's ``safe_load`` runs no code, but it expands aliases without limit (a few hundred bytes of nested anchors
become gigabytes), recurses once per nesting level (thousands of brackets raise RecursionError), reads a file of any
size, and lets a second ``train:`` silently replace the first. A config is small and flat, so each of those is
refused here with one line, before anything is built, in time proportional to the file's size.
"""

from __future__ import annotations

from typing import Any

import yaml

from orbit_lite.errors import OrbitLiteError

MAX_BYTES = 1 << 20  # a recipe is a few KB; a megabyte is far more than any config needs
MAX_DEPTH = 32  # sections nest two levels; lists of numbers one more
MAX_NODES = 100_000  # values after every alias is expanded
# libyaml's parser when PyYAML has it: the pure-Python scanner looks ahead over every open bracket (quadratic)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Open:
    """A collection being read: its anchor, its expanded size so far, and (a mapping) the keys seen."""

    def __init__(self, anchor: str | None, mapping: bool) -> None:
        self.anchor, self.size, self.items = anchor, 0, 0
        self.keys: dict[str, int] | None = {} if mapping else None


def _check_shape(text: str, where: str) -> None:
    """Walk the parser's events (no recursion, no expansion): refuse deep nesting, a too large expansion and a key
    written twice in one mapping (YAML says keys are unique; PyYAML would keep the last silently)."""
    sizes: dict[str, int] = {}  # an anchor's size once expanded
    stack = [_Open(None, False)]
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append(_Open(event.anchor, isinstance(event, yaml.MappingStartEvent)))
                if len(stack) - 1 > MAX_DEPTH:
                    raise OrbitLiteError(f"{where}: nested more than {MAX_DEPTH} levels deep; a config is a few "
                                         "sections of plain values")  # fmt: skip
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = stack.pop()
                anchor, size = done.anchor, done.size + 1
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
                _check_key(stack[-1], event, where)
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, sizes.get(event.anchor, 1)
            else:
                continue
            if anchor is not None:
                sizes[anchor] = size
            stack[-1].size += size
            stack[-1].items += 1
            if stack[-1].size > MAX_NODES or size > MAX_NODES:
                raise OrbitLiteError(f"{where}: its aliases expand to more than {MAX_NODES:,} values; a config "
                                     "needs far fewer: write the values out")  # fmt: skip
    except yaml.YAMLError as e:
        if "flow level" in str(e):  # libyaml's own bound on nesting, met before the events get this deep
            raise OrbitLiteError(f"{where}: nested more than {MAX_DEPTH} levels deep; a config is a few sections "
                                 "of plain values") from None  # fmt: skip
        raise OrbitLiteError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None


def _check_key(parent: _Open, event: yaml.ScalarEvent, where: str) -> None:
    if parent.keys is None or parent.items % 2 or event.value == "<<":  # not a key, or a merge (`<<: *base`)
        return
    line = event.start_mark.line + 1
    first = parent.keys.get(event.value)
    parent.keys.setdefault(event.value, line)
    if first is not None:
        raise OrbitLiteError(f"{where}: key {event.value!r} is written twice in one mapping (lines {first} and "
                             f"{line}); keep one")  # fmt: skip


def load_yaml(text: str, where: str) -> Any:
    """``text`` read as YAML within the bounds above; ``where`` names it in the one-line errors (a file, an option)."""
    if len(text) > MAX_BYTES:
        raise OrbitLiteError(f"{where}: {len(text):,} characters; a config is at most {MAX_BYTES:,}")
    _check_shape(text, where)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise OrbitLiteError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:  # cannot happen within MAX_DEPTH; kept so that no input ever shows a traceback
        raise OrbitLiteError(f"{where}: nested too deeply") from None


def read_yaml_file(path: str, what: str = "config") -> Any:
    """A YAML file's content within the bounds above: size is checked before reading the whole file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise OrbitLiteError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > MAX_BYTES:
        raise OrbitLiteError(f"{path}: larger than {MAX_BYTES // 2**20} MB; a {what} is a small YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OrbitLiteError(f"{path}: not a text file; a {what} is a YAML file") from None
    return load_yaml(text, str(path))
