"""Is the suite still able to fail? Break the code on purpose, one hand-made mutation at a time, and run the tests
that cover it: each mutation must make at least one of them fail ("caught").

Each mutation replaces one exact piece of source text in a private copy of the package (the working tree is never
touched); a mutation whose text is no longer in the source is reported as "stale" so that the list is kept up to
date with the code. Prints one JSON object: per mutation, caught / missed / stale and the seconds its tests took.

    nice -n 19 python benchmarks/mutation_check.py --json            # every mutation (a few minutes)
    python benchmarks/mutation_check.py --only finetune_lr_ignored  # one of them
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from worker import end_children_on_signals, run_child

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository
    before: str  # exact source text
    after: str
    tests: tuple[str, ...]  # pytest node ids or -k expressions (file::name)


MUTATIONS = (
    Mutation("finetune_lr_ignored", "orbit_lite/learners/finetune.py",
             "torch.optim.Adam(groups, lr=cfg.lr,", "torch.optim.Adam(groups, lr=1e-3,",
             ("tests/test_finetuner.py::test_finetuner_steps_at_the_configured_learning_rate",)),
    Mutation("shared_personalization_ignores_object_cap", "orbit_lite/engine/evaluate.py",
             "        and len(candidates) <= sampling.object_cap\n", "",
             ("tests/test_evaluate.py::test_one_personalization_serves_every_task_only_when_every_object_fits_the_cap",)),
    Mutation("finetuner_film_head_not_zero", "orbit_lite/learners/finetune.py",
             "weight = torch.zeros(way, self.backbone.feature_dim, device=self.device, requires_grad=True)",
             "weight = torch.full((way, self.backbone.feature_dim), 0.01, device=self.device, requires_grad=True)",
             ("tests/test_finetuner.py::test_finetuner_film_head_starts_at_zero",)),
    Mutation("channel_means_bgr", "orbit_lite/models/backbone_specs.py",
             "_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))",
             "_IMAGENET = ((0.406, 0.456, 0.485), (0.225, 0.224, 0.229))",
             ("tests/test_backbones.py::test_timm_weights_from_a_local_file",)),
    Mutation("yaml_duplicate_keys_allowed", "orbit_lite/safe_yaml.py",
             "    if first is not None:\n", "    if False:\n",
             ("tests/test_nothing_silent.py::test_a_section_written_twice_is_an_error_not_the_last_one",)),
    Mutation("metrics_appended_in_place", "orbit_lite/engine/train.py",
             "        atomic_write_bytes(self.metrics, self._lines)\n        if self.tensorboard",
             "        with open(self.metrics, 'ab') as f:\n            f.write((json.dumps(record) + '\\n').encode())\n"
             "        if self.tensorboard",
             ("tests/test_links_and_paths.py::test_a_hard_link_taken_while_a_run_logs_keeps_its_lines",)),
    Mutation("metrics_truncated_in_place", "orbit_lite/engine/train.py",
             "        self._lines = self.metrics.read_bytes()[:size] if self.metrics.exists() else b\"\"\n"
             "        atomic_write_bytes(self.metrics, self._lines)\n",
             "        self._lines = self.metrics.read_bytes()[:size] if self.metrics.exists() else b\"\"\n"
             "        self.metrics.touch()\n"
             "        with open(self.metrics, 'r+b') as f:\n            f.truncate(size)\n",
             ("tests/test_links_and_paths.py::test_resuming_a_hard_linked_copy_leaves_the_original_as_it_was",)),
    Mutation("links_in_a_run_followed", "orbit_lite/outputs.py",
             "    refuse_links_in_run(run_dir)\n", "",
             ("tests/test_links_and_paths.py::test_a_checkpoints_link_in_a_run_is_never_written_through",)),
    Mutation("divergence_unchecked", "orbit_lite/learners/finetune.py",
             "        if all(bool(torch.isfinite(t).all()) for t in tensors):\n            return\n",
             "        return\n",
             ("tests/test_nothing_silent.py::test_a_diverging_personalization_names_the_setting_and_saves_nothing",)),
    Mutation("integer_range_unchecked", "orbit_lite/limits.py",
             "if hint is int and not -INT_RANGE <= value < INT_RANGE:", "if False:",
             ("tests/test_nothing_silent.py::test_an_integer_setting_beyond_64_bits_is_refused_before_anything_is_written",)),
    Mutation("overwrite_writes_into_the_old_run", "orbit_lite/replace_run.py",
             "    if old_id is None:\n        yield\n", "    if True:\n        yield\n",
             ("tests/test_train_overwrite.py::test_overwrite_replaces_an_earlier_run_and_only_when_asked",
              "tests/test_train_overwrite.py::test_a_failed_overwrite_puts_the_old_run_back")),
    Mutation("overwrite_failure_loses_the_old_run", "orbit_lite/replace_run.py",
             "        _put_back(run_dir, trash / run_dir.name, new_id)\n", "",
             ("tests/test_train_overwrite.py::test_a_failed_overwrite_puts_the_old_run_back",)),
    Mutation("overwrite_trusts_a_copied_checkpoint", "orbit_lite/replace_run.py",
             "    _own_files(run_dir, run_id)\n", "",
             ("tests/test_train_overwrite.py::test_overwrite_refuses_what_orbit_lite_cannot_prove_it_wrote",)),
    Mutation("train_replaces_a_run_without_overwrite", "orbit_lite/engine/train.py",
             "    elif run.last.exists() and run.replaces is None:\n", "    elif False:\n",
             ("tests/test_train_overwrite.py::test_overwrite_replaces_an_earlier_run_and_only_when_asked",)),
)  # fmt: skip


def run(mutation: Mutation, timeout: float) -> dict:
    source = (ROOT / mutation.file).read_text()
    if source.count(mutation.before) != 1:
        return {"outcome": "stale", "why": f"the text to mutate is not in {mutation.file} exactly once"}
    with tempfile.TemporaryDirectory(prefix="orbit-lite-mutant.") as tmp:
        copy = Path(tmp)
        for part in ("orbit_lite", "tests", "benchmarks", "configs", "pyproject.toml"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                shutil.copy(src, copy / part)
        (copy / mutation.file).write_text(source.replace(mutation.before, mutation.after))
        env = {**os.environ, "PYTHONPATH": str(copy)}
        started = time.perf_counter()
        try:
            done = run_child([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "",
                              *mutation.tests], cwd=copy, env=env, capture_output=True, text=True,
                             timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"outcome": "timeout", "seconds": round(time.perf_counter() - started, 1)}
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode == 1:  # a test failed: the mutation is caught
        return {"outcome": "caught", "seconds": seconds}
    if done.returncode == 0:
        return {"outcome": "missed", "seconds": seconds}
    return {"outcome": "error", "seconds": seconds, "why": done.stdout[-400:]}


def main() -> None:
    end_children_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="a mutation's name (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    report = {}
    for mutation in chosen:
        report[mutation.name] = run(mutation, args.timeout)
        if not args.json:
            print(f"{mutation.name}: {report[mutation.name]['outcome']}", file=sys.stderr, flush=True)
    summary = {"mutations": len(report), "caught": sum(r["outcome"] == "caught" for r in report.values()),
               "results": report}  # fmt: skip
    print(json.dumps(summary, indent=None if args.json else 1))
    sys.exit(0 if summary["caught"] == len(report) else 1)


if __name__ == "__main__":
    main()
