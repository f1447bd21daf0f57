"""`brainscan screen` on DICOM: same answers across encodings and photometric twins, a series summary."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainscan.cli import main
from tiny_models import FOUR_CLASSES, build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx", seed=5)


def _screen(paths, out: Path, model: Path, *extra: str) -> tuple[int, list[dict[str, str]]]:
    status = main(["screen", *map(str, paths), "--out", str(out), "--model", str(model), "--progress", "never", *extra])
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return status, list(csv.DictReader(handle))


def _probabilities(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[f"p_{c}"]) for c in FOUR_CLASSES])


def _transfer_syntax_files(request) -> list[Path]:
    try:
        return request.getfixturevalue("shared_transfer_syntaxes")
    except pytest.skip.Exception:
        return request.getfixturevalue("synthetic_transfer_syntaxes").files


def test_the_nine_transfer_syntaxes_give_the_same_probabilities(request, model, tmp_path):
    files = _transfer_syntax_files(request)
    status, rows = _screen(files, tmp_path / "out", model)
    assert status == 0, [r["error"] for r in rows if r["error"]]
    assert len(rows) == 9
    reference = _probabilities(rows[0])
    for row in rows[1:]:
        np.testing.assert_array_equal(_probabilities(row), reference, err_msg=row["path"])


def test_a_monochrome1_slice_gives_the_result_of_its_monochrome2_twin(dicom_samples, model, tmp_path):
    for mono2, mono1 in ((dicom_samples.mono2, dicom_samples.mono1),
                         (dicom_samples.mono2_windowed, dicom_samples.mono1_windowed)):
        out = tmp_path / mono2.parent.name
        status, rows = _screen([mono2, mono1], out, model)
        assert status == 0
        by_name = {Path(r["path"]).name: r for r in rows}
        assert by_name["mono1.dcm"]["label"] == by_name["mono2.dcm"]["label"]
        np.testing.assert_allclose(_probabilities(by_name["mono1.dcm"]), _probabilities(by_name["mono2.dcm"]), atol=1e-6)


def test_a_series_folder_gets_a_row_per_slice_in_order_and_a_summary(sagittal_series_dir, model, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(sagittal_series_dir, study / "series")
    (study / "series" / "DICOMDIR").write_bytes(b"ignored inside folders")
    status, rows = _screen([study], tmp_path / "out", model)
    assert status == 0
    slices = len(list((study / "series").glob("IM*"))) or len(rows)
    assert len(rows) == slices
    assert [int(r["series_index"]) for r in rows] == list(range(len(rows)))
    assert {r["series_uid"] for r in rows} != {""} and len({r["series_uid"] for r in rows}) == 1
    with open(tmp_path / "out" / "series.csv", newline="", encoding="utf-8") as handle:
        (summary,) = list(csv.DictReader(handle))
    most = max(rows, key=lambda r: float(r["tumour_probability"]))
    assert summary["most_suspicious_path"] == most["path"]
    assert int(summary["slices"]) == len(rows) and int(summary["ok"]) == len(rows)


def test_multiframe_dicom_gets_one_row_per_frame(dicom_samples, model, tmp_path):
    status, rows = _screen([dicom_samples.multiframe], tmp_path / "out", model)
    assert status == 0
    assert [int(r["frame"]) for r in rows] == [0, 1, 2]


def test_broken_dicom_files_fail_alone_with_a_message(dicom_samples, model, tmp_path):
    status, rows = _screen([dicom_samples.single, dicom_samples.no_pixels, dicom_samples.truncated],
                           tmp_path / "out", model)
    assert status == 1
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["single.dcm"]["status"] == "ok"
    assert "no pixel data" in by_name["report.dcm"]["error"]
    assert by_name["truncated.dcm"]["status"] == "error" and "truncated.dcm" in by_name["truncated.dcm"]["error"]
