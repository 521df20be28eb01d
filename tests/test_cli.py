from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbit_lite.cli.main import app

runner = CliRunner()


def test_help_lists_the_data_commands() -> None:
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("synth", "summarize", "check"):
        assert command in result.output


def test_python_dash_m_runs_the_same_app() -> None:
    result = subprocess.run([sys.executable, "-m", "orbit_lite", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("orbit-lite ")


def test_summarize_json_is_one_object_with_exact_counts(tiny_frames: Path) -> None:
    result = runner.invoke(app, ["data", "summarize", str(tiny_frames), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    # tiny preset: 3 objects per user, 2 clean (12 frames) + 1 clutter (80 frames) video per object
    per_user = {"objects": 3, "clean_videos": 6, "clutter_videos": 3, "frames": 6 * 12 + 3 * 80}
    for split, users in {"train": 2, "validation": 1, "test": 1}.items():
        assert counts[split] == {"users": users, **{k: v * users for k, v in per_user.items()}}


def test_summarize_counts_video_files_by_decodable_frames(tiny_frames: Path, tiny_videos: Path) -> None:
    a = json.loads(runner.invoke(app, ["data", "summarize", str(tiny_frames), "--json"]).stdout)
    b = json.loads(runner.invoke(app, ["data", "summarize", str(tiny_videos), "--json"]).stdout)
    assert a == b


def test_summarize_table_shows_every_split(tiny_frames: Path) -> None:
    result = runner.invoke(app, ["data", "summarize", str(tiny_frames)])
    assert result.exit_code == 0
    for split in ("train", "validation", "test"):
        assert split in result.stdout


def test_check_passes_a_clean_tree(tiny_frames: Path, tiny_videos: Path) -> None:
    for root in (tiny_frames, tiny_videos):
        result = runner.invoke(app, ["data", "check", str(root)])
        assert result.exit_code == 0, result.output
        assert result.stdout == ""


def test_check_finds_every_planted_problem(tiny_copy: Path) -> None:
    train = tiny_copy / "train"
    user = sorted(train.iterdir())[0]
    objects = sorted(user.iterdir())
    clean_videos = sorted((objects[0] / "clean").iterdir())
    frames = sorted(clean_videos[0].iterdir())
    truncated = frames[3]
    truncated.write_bytes(truncated.read_bytes()[:100])
    garbage = frames[5]
    garbage.write_bytes(b"this is not a jpeg")
    empty_video = clean_videos[1]
    for f in empty_video.iterdir():
        f.unlink()
    stray = objects[1] / "notes.txt"
    stray.write_text("hi")
    clutter = next((objects[2] / "clutter").iterdir())
    annotation = tiny_copy / "annotations" / "train" / f"{clutter.name}.json"
    annotation.unlink()
    mismatched_video = next((objects[1] / "clean").iterdir())
    mismatched = tiny_copy / "annotations" / "train" / f"{mismatched_video.name}.json"
    notes = json.loads(mismatched.read_text())
    notes.pop(next(iter(notes)))
    mismatched.write_text(json.dumps(notes))
    before = sorted(p.stat().st_mtime_ns for p in tiny_copy.rglob("*"))

    result = runner.invoke(app, ["data", "check", str(tiny_copy)])
    assert result.exit_code == 1
    report = result.stdout
    expected = [
        (truncated, "truncated JPEG"),
        (garbage, "not a decodable image"),
        (empty_video, "empty video"),
        (stray, "unexpected entry"),
        (clutter, "no annotation file"),
        (mismatched, "1 frames without an annotation"),
    ]
    for path, message in expected:
        assert any(str(path) in line and message in line for line in report.splitlines()), (path, message, report)
    assert len(report.strip().splitlines()) == len(expected)
    assert sorted(p.stat().st_mtime_ns for p in tiny_copy.rglob("*")) == before  # read-only


@pytest.mark.video
def test_check_finds_a_corrupt_video_file(tiny_videos: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_videos, tmp_path / "tree"))
    victim = next(root.rglob("*.mp4"))
    victim.write_bytes(b"\x00" * 2048)
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    assert str(victim) in result.stdout


@pytest.mark.parametrize("command", ["summarize", "check"])
def test_missing_root_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["data", command, str(missing)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]
    assert "Traceback" not in result.output


def test_a_folder_with_no_splits_and_no_videos_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "junk" / "a").mkdir(parents=True)
    result = runner.invoke(app, ["data", "summarize", str(tmp_path / "junk")])
    assert result.exit_code == 1 and "neither an ORBIT tree" in result.stderr


def test_synth_cli_writes_a_tree(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "d"), "--preset", "tiny", "--frame-size", "24"])
    assert result.exit_code == 0, result.output
    frame = next((tmp_path / "d" / "train").rglob("*.jpg"))
    import cv2

    assert cv2.imread(str(frame)).shape == (24, 24, 3)
    again = runner.invoke(app, ["data", "synth", str(tmp_path / "d"), "--preset", "tiny"])
    assert again.exit_code == 1 and "already exists and is not an empty folder" in again.stderr


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (["data", "synth"], "[default: the preset's]"),
        (["evaluate"], "[default: 50 for orbit2022, 5 for orbit2021]"),
        (["train"], "[default: the config's train.device]"),
        (["personalize"], "<dir>/<object>/[clean/]<videos>"),
    ],
)
def test_help_shows_bracketed_text(command: list[str], text: str) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert text in " ".join(result.stdout.split())


def test_one_line_errors_keep_bracketed_text(tmp_path: Path) -> None:
    missing = tmp_path / "[red]data"
    result = runner.invoke(app, ["data", "check", str(missing)])
    assert result.exit_code == 1 and f"error: {missing}: no such folder" in result.stderr


def test_check_without_decoding_finds_empty_and_truncated_frames(tiny_copy: Path) -> None:
    from orbit_lite.data.check import check_tree
    from orbit_lite.data.layout import index_tree

    video = index_tree(tiny_copy).users("train")[0].objects[0].clean[0]
    empty, cut = video.frames.path(2), video.frames.path(5)
    empty.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[:200])
    problems = {p.path: p.message for p in check_tree(tiny_copy, decode=False)}
    assert problems == {empty: "empty (0-byte) frame", cut: "truncated (no JPEG end-of-image marker) frame"}


def test_check_flags_an_object_without_clean_videos(tiny_frames: Path, tmp_path: Path) -> None:
    from orbit_lite.data.check import check_tree

    user = next((tiny_frames / "test").iterdir())
    mine = tmp_path / "me"
    for obj in sorted(user.iterdir())[:2]:
        shutil.copytree(obj / "clean", mine / obj.name)  # <dir>/<object>/<video>: clean videos
    only_clutter = sorted(user.iterdir())[2]
    shutil.copytree(only_clutter / "clutter", mine / only_clutter.name / "clutter")
    problems = [(p.path, p.message) for p in check_tree(mine)]
    assert problems == [(mine / only_clutter.name, "object has no clean videos, so it cannot be taught")]
