"""Two runs writing the same output folder: the second is refused, the first is not disturbed."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainscan.cli import main
from brainscan.engine.results.store import LOCK_FILE, FolderLock, OutputLockedError, ResultsStore
from tiny_models import build_tiny_model

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pauses a process with SIGSTOP")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def many_images(tmp_path_factory, real_jpgs) -> list[Path]:
    folder = tmp_path_factory.mktemp("many")
    images = []
    for index in range(120):
        target = folder / f"slice-{index:03d}.jpg"
        shutil.copy(real_jpgs[index % len(real_jpgs)], target)
        images.append(target)
    return images


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def command(images: list[Path], out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "brainscan.cli", "screen", *map(str, images), "--out", str(out),
            "--model", str(model), "--batch-size", "1", "--progress", "never"]


def test_second_run_on_the_same_folder_exits_two_and_the_first_finishes_intact(model, many_images, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(command(many_images, out, model), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ((out / "results.csv").exists() and len(rows(out)) >= 3):
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # paused while holding the folder
        second = subprocess.run(command(many_images, out, model), capture_output=True, text=True, timeout=120)
        during = rows(out)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert f"another brainscan run is writing to {out}" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert len(during) >= 3
    final = rows(out)
    assert sorted(r["path"] for r in final) == sorted(map(str, many_images))  # each once, none lost
    assert all(r["status"] == "ok" for r in final)
    # once the first run has ended, the folder is free again: the same command resumes and has nothing to do
    again = subprocess.run(command(many_images, out, model), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "120 of 120 frames already done" in again.stderr
    assert len(rows(out)) == 120


def test_lock_is_released_when_the_store_closes_and_when_a_process_dies(model, tmp_path):
    out = tmp_path / "out"
    with ResultsStore(out, ("a", "b")), pytest.raises(OutputLockedError, match="another brainscan run is writing"):
        ResultsStore(out, ("a", "b"))
    with ResultsStore(out, ("a", "b")):
        pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from brainscan.engine.results.store import FolderLock; "
        f"lock = FolderLock({str(out)!r}); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError):
            FolderLock(out)
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the operating system drops the lock
        holder.wait()
    FolderLock(out).release()
    assert (out / LOCK_FILE).exists()


def test_an_output_folder_given_as_input_is_skipped_and_said(model, real_jpgs, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copy(real_jpgs[0], tmp_path / "in.jpg")
    assert main(["screen", str(tmp_path / "in.jpg"), "--out", str(out), "--model", str(model),
                 "--save-overlays"]) == 0
    assert (out / LOCK_FILE).exists()
    capsys.readouterr()
    assert main(["screen", str(out), "--out", str(tmp_path / "o2"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "1 folder skipped: brainscan output folders (out)" in err and "no images found" in err
    assert not (tmp_path / "o2" / "results.csv").exists() or not rows(tmp_path / "o2")


def test_unwritable_output_folder_is_still_an_output_error(model, real_jpgs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["screen", str(real_jpgs[0]), "--out", str(blocker / "out"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "cannot write results here" in err and "Traceback" not in err
    assert os.path.isfile(blocker)
