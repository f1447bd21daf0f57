"""`brainscan self-test`: passes on this installation, and each kind of failure is named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brainscan import selftest
from brainscan.cli import main
from tiny_models import build_tiny_model, tiny_contract


def test_self_test_passes_with_the_shipped_model_in_one_line(capsys):
    assert main(["self-test", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brainscan self-test ok: 8 samples and 4 compressed DICOM")
    assert captured.err == ""


def test_cuda_request_without_cuda_is_explained_and_the_cpu_is_used(capsys):
    assert main(["self-test", "--device", "cuda"]) == 0
    captured = capsys.readouterr()
    assert "CUDA" in captured.err and "Running on the CPU" in captured.err
    assert "on CPU" in captured.out


def test_a_model_that_gets_the_samples_wrong_fails_naming_them(tmp_path, capsys):
    model = build_tiny_model(tmp_path / "random.onnx", tiny_contract(input_size=(224, 224)))
    assert main(["self-test", "--model", str(model), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out
    assert "expected" in captured.err and ".jpg: classified" in captured.err


def test_a_model_with_other_classes_is_reported(tmp_path, capsys):
    model = build_tiny_model(tmp_path / "binary.onnx", tiny_contract(task="binary", classes=("no", "yes")))
    assert main(["self-test", "--model", str(model), "--device", "cpu"]) == 1
    assert "are not among the model's classes ['no', 'yes']" in capsys.readouterr().err


def test_missing_model_exits_two_with_one_line(tmp_path, capsys):
    assert main(["self-test", "--model", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and len(err.strip().splitlines()) == 1


def test_missing_decoder_and_gpl_codec_are_reported(monkeypatch, capsys):
    monkeypatch.setitem(selftest.REQUIRED_DECODERS, "RLELossless", ("pylibjpeg", "no-such-plugin"))
    monkeypatch.setattr(selftest, "GPL_MODULES", ("json",))  # stands in for libjpeg being importable
    assert main(["self-test", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "DICOM decoder 'no-such-plugin' for RLELossless is missing" in err
    assert "GPL module 'json'" in err


@pytest.mark.slow
def test_self_test_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "brainscan.cli", "self-test", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "self-test ok" in done.stdout
