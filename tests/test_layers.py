"""The import graph of orbit_lite: no cycle, and no module imports from a layer above its own (lazy imports inside
functions count too: they are the same dependency, only later)."""

from __future__ import annotations

import ast
from pathlib import Path

import orbit_lite

ROOT = Path(orbit_lite.__file__).parent
# Lowest first; a module may import its own layer and the ones before it.
LAYERS = (
    {
        "orbit_lite",
        "errors",
        "choices",
        "tags",
        "shapes",
        "metrics",
        "lite",
        "cost",
        "publish",
        "profiling",
        "safe_yaml",
        "progress",
    },
    {"config", "limits", "coerce", "checkpoint", "outputs", "out_lock", "safe_out", "replace_run", "results"},
    {"data", "models"},
    {"learners", "runtime", "personal"},
    {"export", "import_orbit", "visual"},
    {"engine"},
    {"cli", "serve", "__main__"},  # front ends: the command line and the web service
)


def modules() -> dict[str, set[str]]:
    """Each orbit_lite module and the orbit_lite modules it imports."""
    names = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in ROOT.rglob("*.py")}  # fmt: skip
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orbit_lite"):
                for alias in node.names:  # `from orbit_lite import runtime` imports a module, not a name
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in names else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("orbit_lite")}
        graph[name] = {d for d in deps if d != name}
    return graph


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    found = [i for i, group in enumerate(LAYERS) if part in group]
    assert found, f"{module} has no layer: add it to LAYERS"
    return found[0]


def test_every_module_has_a_layer_and_imports_none_above_it() -> None:
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in modules().items() for d in deps if layer(d) > layer(m)]  # fmt: skip
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = modules()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
