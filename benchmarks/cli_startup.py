"""How long the command line takes to answer before any work: ``--help``, each ``COMMAND --help``, ``--version``.

Wall time of fresh processes (median of ``--repeats``), against two floors: a bare Python and Python importing only
the CLI's own libraries (typer, rich, yaml). ``python -X importtime`` names the slowest imports of the CLI module,
so a heavy import that creeps back in (torch, timm, cv2) shows up by name.

    python benchmarks/cli_startup.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SUBCOMMANDS = ("train", "personalize", "recognize", "evaluate", "export", "import-orbit", "data", "data synth")
COMMANDS = ("--help", "--version", *(f"{c} --help" for c in SUBCOMMANDS))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of a fresh ``argv`` process over ``repeats`` runs (after an untimed warm-up).

    CPU seconds (user + system) are reported too: on a shared machine they move far less with the load than wall
    time does."""
    subprocess.run(argv, capture_output=True, check=True)  # page cache and .pyc files warm for every command alike
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), _cpu()
        subprocess.run(argv, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3)}


def import_times(module: str, top: int) -> list[dict[str, object]]:
    """The ``top`` slowest imports (cumulative microseconds) of ``module`` in a fresh process."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append({"module": name.strip(), "cumulative_ms": int(cumulative) / 1000})
    total = max((r["cumulative_ms"] for r in rows), default=0.0)
    tops = sorted((r for r in rows if "." not in str(r["module"]) or r["module"].startswith("orbit_lite")),
                  key=lambda r: -r["cumulative_ms"])  # fmt: skip
    return [{"module": module, "cumulative_ms": total}, *tops[1 : top + 1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="Print one JSON object (the default prints it too).")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "orbit_lite"]
    result = {
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "repeats": args.repeats,
        "load_average_1min": os.getloadavg()[0],
        "python_bare": timed([sys.executable, "-c", "pass"], args.repeats),
        "python_typer_rich_yaml": timed([sys.executable, "-c", "import typer, rich.table, yaml"], args.repeats),
        "commands": {c: timed([*cli, *c.split()], args.repeats) for c in COMMANDS},
        "python_torch": timed([sys.executable, "-c", "import torch"], args.repeats),
        "slowest_imports_of_the_cli": import_times("orbit_lite.cli.main", 8),
    }
    result["help_s"] = result["commands"]["--help"]["wall_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
