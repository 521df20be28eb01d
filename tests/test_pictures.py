"""What a person looks at: recognize's annotated video and plot, train's curves, evaluate's pictures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree
from orbit_lite.outputs import is_annotated_video, is_orbit_lite_png

runner = CliRunner()


@pytest.fixture(scope="module")
def personal(tiny_frames: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orbit_lite.engine.model import Checkpoint, open_model
    from orbit_lite.engine.personalize import personalize_user
    from orbit_lite.personal import save_personal

    learner, cfg = open_model(Checkpoint(tiny_checkpoint), torch.device("cpu"))
    model, _ = personalize_user(learner, index_tree(tiny_frames).users("test")[0], cfg)
    path = tmp_path_factory.mktemp("personal") / "me.pt"
    save_personal(path, model)
    return path


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_recognize_annotates_every_scored_frame_and_plots(tiny_frames: Path, personal: Path, tmp_path: Path) -> None:
    clip = next(v for v in index_tree(tiny_frames).users("test")[0].videos() if v.video_type == "clutter")
    video, plot = tmp_path / "seen.mp4", tmp_path / "seen.png"
    args = ["recognize", "--model", str(personal), str(clip.path), "--label", clip.object_name, "--device", "cpu"]
    result = runner.invoke(app, [*args, "--json", "--annotate", str(video), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    per_frame = json.loads(result.stdout)["inputs"][0]["per_frame"]
    frames = _decode(video)
    assert len(frames) == clip.num_frames == len(per_frame)
    original = cv2.imread(str(clip.frames.path(0)))
    assert frames[0].shape == (256, 256, 3) and original.shape == (32, 32, 3)  # 32 px enlarged 8x to be legible
    for frame, answer in zip(frames, per_frame, strict=True):
        band = frame[: round(0.09 * 256)]
        assert (band.min(axis=2) > 180).sum() > 30  # white text on the darkened band
        b, g, r = (int(c) for c in frame[128, 1])  # the border: green when the answer is right, red when wrong
        right = answer["prediction"] == clip.object_name
        assert (g > r + 60) if right else (r > g + 60), (answer, (b, g, r))
    assert is_annotated_video(video) and not is_annotated_video(clip.frames.path(0))
    png = cv2.imread(str(plot))
    assert png.shape == (320, 1000, 3) and is_orbit_lite_png(plot)
    again = runner.invoke(app, [*args, "--annotate", str(video), "--plot", str(plot)])  # our own files: replaced
    assert again.exit_code == 0, again.output
    assert len(_decode(video)) == clip.num_frames


def test_recognize_refuses_picture_files_it_did_not_write(tiny_frames: Path, personal: Path, tmp_path: Path) -> None:
    clip = next(v for v in index_tree(tiny_frames).users("test")[0].videos() if v.video_type == "clutter")
    theirs = tmp_path / "holiday.mp4"
    theirs.write_bytes(b"\x00\x00\x00\x18ftypmp42 someone's video")
    drawing = tmp_path / "drawing.png"
    cv2.imwrite(str(drawing), np.zeros((4, 4, 3), np.uint8))
    args = ["recognize", "--model", str(personal), str(clip.path)]
    cases = {
        "is not an annotated video written by orbit-lite": ["--annotate", str(theirs)],
        "is not an orbit-lite plot written by orbit-lite": ["--plot", str(drawing)],
        "give a name ending in .mp4": ["--annotate", str(tmp_path / "a.avi")],
        "give a name ending in .png": ["--plot", str(tmp_path / "p.jpg")],
    }
    for message, extra in cases.items():
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 1 and message in result.stderr, (extra, result.output)
    two = runner.invoke(app, [*args, str(clip.path), "--annotate", str(tmp_path / "x.mp4")])
    assert two.exit_code == 1 and "give one INPUT" in two.stderr
    assert theirs.read_bytes().endswith(b"someone's video") and cv2.imread(str(drawing)).shape == (4, 4, 3)


def test_recognize_table_shows_whole_video_names(tiny_frames: Path, personal: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    clips = [v for v in user.videos() if v.video_type == "clutter"]
    result = runner.invoke(app, ["recognize", "--model", str(personal), *(str(c.path) for c in clips)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    # ORBIT video ids are long: the table numbers its rows and fits 80 columns; each whole name is on one line below
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines if "--" not in line) <= 80
    for number, clip in enumerate(clips, 1):
        assert f"{number:>3}  {clip.path.name}" in lines, (clip.path.name, result.stdout)


def test_training_leaves_curves_and_tensorboard_events(tiny_checkpoint: Path) -> None:
    from orbit_lite.visual.curves import HEIGHT, WIDTH

    run = tiny_checkpoint.parent.parent  # the session's one-epoch tiny run
    png = cv2.imread(str(run / "curves.png"))
    assert png.shape == (round(HEIGHT * 100), round(WIDTH * 100), 3) and is_orbit_lite_png(run / "curves.png")
    pytest.importorskip("tensorboard")  # in the dev extra, so `make test` runs this part
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train]
    np.testing.assert_allclose([e.value for e in loss], [r["loss"] for r in train], rtol=1e-6)
    validation = [r for r in records if r["type"] == "validation"]
    assert [e.value for e in events.Scalars("validation/frame_accuracy")] == pytest.approx(
        [r["frame_accuracy"] for r in validation]
    )


def test_tensorboard_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from orbit_lite.errors import OrbitLiteError
    from orbit_lite.visual import tensorboard

    assert not tensorboard.wanted("off")
    monkeypatch.setattr(tensorboard, "installed", lambda: False)
    assert not tensorboard.wanted("auto")
    with pytest.raises(OrbitLiteError, match=r"pip install 'orbit-lite\[tensorboard\]'"):
        tensorboard.wanted("on")
    monkeypatch.setattr(tensorboard, "installed", lambda: True)
    assert tensorboard.wanted("auto") and tensorboard.wanted("on")


def test_smoothing_starts_at_the_first_value_and_skips_gaps() -> None:
    from orbit_lite.visual.curves import smoothed

    values = smoothed([2.0, float("nan"), 4.0], weight=0.5)
    assert values[0] == 2.0 and values[1] == 2.0
    assert values[2] == pytest.approx((0.5 * 0.5 * 2.0 + 0.5 * 4.0) / (1 - 0.25))  # bias-corrected average


def test_confusion_counts_frames_by_object_name_across_tasks() -> None:
    from orbit_lite.results import TaskResult, UserResult, VideoScore
    from orbit_lite.visual.evaluation import confusion_figure, confusion_of

    def score(task: int, video: str, obj: str, accuracy: float) -> VideoScore:
        return VideoScore("P1", task, video, obj, 0, 0, accuracy, 0.0, 0.0)

    scores = (score(0, "a1", "mug", 0.5), score(0, "b1", "keys", 1.0), score(1, "c1", "cup", 1 / 3),
              score(1, "a1", "mug", 0.0))  # fmt: skip
    tasks = (  # task 1 teaches a different subset, so its labels index another list
        TaskResult(("keys", "mug"), {"a1": {"1": 1, "2": 0}, "b1": {"1": 0}}),
        TaskResult(("cup", "mug"), {"c1": {"1": 1, "2": 1, "3": 0}, "a1": {"1": 0}}),
        TaskResult(("cup", "mug", "pen"), {}),  # pen: taught, never scored
    )
    result = UserResult("P1", scores=scores, tasks=tasks)
    c = confusion_of(result)
    assert c.objects == ("cup", "keys", "mug", "pen")
    # a1's frame 1 is scored by both tasks (mug, then cup): one frame, split between their answers
    np.testing.assert_allclose(c.counts, [[1, 0, 2, 0], [0, 1, 0, 0], [0.5, 1, 0.5, 0], [0, 0, 0, 0]])
    assert c.frames() == 6  # distinct frames: c1 x 3, b1 x 1, a1 x 2
    np.testing.assert_allclose(c.row_normalized()[0], [1 / 3, 0, 2 / 3, 0])
    assert c.empty_rows() == [3]
    # the title's accuracy is the results table's: the mean of the (task, video) scores, not the pooled frames
    assert c.accuracy == pytest.approx((0.5 + 1.0 + 1 / 3 + 0.0) / 4) and c.scores == 4
    ax = confusion_figure([result], "t").axes[0]
    assert ax.get_title().startswith("P1: frame accuracy 45.83%") and "6 frames, 4 task x video" in ax.get_title()
    assert "no scored video" in [t.get_text() for t in ax.texts]
    assert min(label.get_fontsize() for label in ax.get_yticklabels()) >= 9


def test_frames_to_recognition_median_at_zero_stays_visible() -> None:
    from orbit_lite.visual.evaluation import frames_to_recognition_figure

    ax = frames_to_recognition_figure([0.0, 0.0, 0.0, 0.2, 1.0], "t").axes[0]
    median = next(line for line in ax.get_lines() if line.get_label().startswith("median"))
    assert median.get_xdata()[0] == 0.0 and ax.get_xlim()[0] < 0  # not under the axis' own line


def test_evaluate_writes_its_pictures(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    import pandas as pd

    from orbit_lite.outputs import RESULTS_MARKER, is_results_folder
    from orbit_lite.visual.evaluation import CONFUSION_FILE, FTR_FILE

    out = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--tasks", "1"])
    assert result.exit_code == 0, result.output
    listed = json.loads((out / RESULTS_MARKER).read_text())["files"]  # covered by the folder's proof
    for name in (CONFUSION_FILE, FTR_FILE):
        assert name in listed and is_orbit_lite_png(out / name)
        assert cv2.imread(str(out / name)).shape[0] > 100
    assert is_results_folder(out)  # so --overwrite may replace it
    again = runner.invoke(app, [*args, "--device", "cpu", "--tasks", "1", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(out / "per_video.csv")) > 0
