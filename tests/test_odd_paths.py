"""Odd things in a folder: each gets a row with a clear message, and nothing blocks or loops."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from brainscan.cli import main
from brainscan.engine.errors import InputError, NotAnImageError
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from tiny_models import build_tiny_model


@pytest.fixture
def odd_folder(tmp_path, real_jpgs) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(real_jpgs[0], folder / "ünïcødé 名前.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "loop").symlink_to(folder)  # a folder that contains itself
    (folder / "folder.dcm").mkdir()
    (folder / "anim.gif").write_bytes(b"GIF89a" + bytes(64))
    return folder


def test_pipes_and_broken_links_are_refused_without_opening_them(odd_folder):
    with pytest.raises(NotAnImageError, match="pipe.jpg: is not a regular file"):
        load_frame(next(r for r in discover([odd_folder]) if r.path.name == "pipe.jpg"))
    with pytest.raises(InputError, match="dangling.jpg: is a broken symbolic link"):
        load_frame(next(r for r in discover([odd_folder]) if r.path.name == "dangling.jpg"))


def test_every_odd_file_gets_one_row_and_the_loop_is_walked_once(odd_folder, tmp_path, capsys):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    assert main(["screen", str(odd_folder), "--out", str(out), "--model", str(model), "--progress", "never"]) == 1
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert sorted(rows) == sorted(["ünïcødé 名前.jpg", "pipe.jpg", "dangling.jpg", "anim.gif"])
    assert rows["ünïcødé 名前.jpg"]["status"] == "ok"
    for name in ("pipe.jpg", "dangling.jpg", "anim.gif"):
        assert rows[name]["status"] == "error" and name in rows[name]["error"]
    assert "Traceback" not in capsys.readouterr().err
