"""``brainscan-viewer --self-test`` of the installed viewer: the same check the frozen application runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")


def _viewer_command() -> list[str]:
    script = Path(sys.executable).with_name("brainscan-viewer")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "brainscan.gui"]


def test_the_viewer_self_test_opens_the_samples_and_passes(tmp_path):
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    done = subprocess.run([*_viewer_command(), "--self-test", "--device", "cpu"], capture_output=True, text=True,
                          timeout=120, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "brainscan-viewer self-test ok" in done.stdout
    assert "8 images opened" in done.stdout
    assert "Traceback" not in done.stderr


def test_the_viewer_self_test_explains_a_cuda_fallback(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is present: CUDA may really be used")
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    done = subprocess.run([*_viewer_command(), "--self-test", "--device", "cuda"], capture_output=True, text=True,
                          timeout=120, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Running on the CPU" in done.stderr or "running on the CPU" in done.stderr
