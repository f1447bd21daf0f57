"""Measurements, regions, key images and notes: the records, their figures, the sidecar file, and the reports
(PDF, HTML, DICOM SR) written by ``brainscan screen --report`` on a folder that has a sidecar."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from brainscan.cli import main
from brainscan.engine.errors import InputError
from brainscan.engine.input.discovery import find_inputs
from brainscan.engine.input.frames import FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.results import annotations as sidecar
from brainscan.engine.results.annotations import (
    SIDECAR_NAME,
    Annotations,
    KeyImage,
    Measurement,
    measure,
    measured,
    region_mask,
)
from brainscan.engine.results.record import frame_key
from brainscan.engine.viewer.annotations import AnnotationsModel
from brainscan.engine.viewer.orientation import pixel_spacing
from tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def series_copy(tmp_path_factory, shared_data_dir: Path) -> Path:
    """A writable copy of the real sagittal series (16 slices), outside the repository."""
    source = shared_data_dir / "dicom" / "sagittal-t1-brain"
    if not source.is_dir():
        pytest.skip(f"the real sagittal series is not at {source}")
    folder = tmp_path_factory.mktemp("study") / "sagittal"
    shutil.copytree(source, folder)
    folder.chmod(0o755)  # the shared folder is read-only, and copytree copies its mode
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name != SIDECAR_NAME)


# -- figures ---------------------------------------------------------------------------------------
def test_an_ellipse_mask_covers_pi_a_b_pixels_and_its_statistics_match_numpy():
    a, b, cx, cy = 40.0, 25.0, 100.3, 80.7
    points = ((cx - a, cy - b), (cx + a, cy + b))
    rng = np.random.default_rng(7)
    values = rng.normal(500.0, 80.0, size=(200, 256))
    mask = region_mask("ellipse", points, values.shape)
    # the pixel count of an exact (centre-inside) mask is pi*a*b to within 1 % for a 40 x 25 pixel ellipse
    assert abs(mask.sum() - math.pi * a * b) / (math.pi * a * b) < 0.01
    # the same mask, pixel by pixel, from the ellipse's equation
    rows, cols = np.mgrid[0:200, 0:256]
    inside = ((cols + 0.5 - cx) / a) ** 2 + ((rows + 0.5 - cy) / b) ** 2 <= 1
    assert (mask == inside).all()
    figures = measure("ellipse", points, values, (0.9, 1.1))
    assert figures.unit == "mm"
    assert figures.area == pytest.approx(math.pi * a * b * 0.9 * 1.1, rel=1e-12)
    assert figures.pixels == inside.sum()
    assert figures.mean == pytest.approx(values[inside].mean(), rel=1e-12)
    assert figures.sd == pytest.approx(values[inside].std(), rel=1e-12)
    assert (figures.minimum, figures.maximum) == (values[inside].min(), values[inside].max())


def test_rectangles_and_polygons_count_the_pixels_whose_centres_are_inside():
    values = np.arange(40 * 50, dtype=float).reshape(40, 50)
    rectangle = measure("rectangle", ((10, 20), (30, 25)), values, None)
    assert (rectangle.pixels, rectangle.area, rectangle.unit) == (100, 100.0, "px")
    assert rectangle.mean == pytest.approx(values[20:25, 10:30].mean())
    square = region_mask("freehand", ((10, 20), (30, 20), (30, 25), (10, 25)), values.shape)
    assert (square == region_mask("rectangle", ((10, 20), (30, 25)), values.shape)).all()
    triangle = measure("freehand", ((0, 0), (40, 0), (0, 40)), values, (2.0, 2.0))
    assert triangle.area == pytest.approx(800 * 4.0)
    assert abs(triangle.pixels - 800) <= 40  # the diagonal's half pixels


def test_a_line_is_measured_in_mm_by_the_real_slices_pixel_spacing(shared_data_dir):
    first = sorted((shared_data_dir / "dicom" / "sagittal-t1-brain").iterdir())[0]
    frame = load_frame(FrameRef(first, kind="dicom"))
    spacing = pixel_spacing(frame.tags)
    assert spacing is not None
    header = pydicom.dcmread(first, stop_before_pixels=True)
    assert spacing == pytest.approx(tuple(float(v) for v in header.PixelSpacing))
    across = measure("line", ((20, 128), (220, 128)), frame.values, spacing)
    assert across.length == pytest.approx(200 * spacing[1])
    diagonal = measure("line", ((20, 30), (120, 130)), frame.values, spacing)
    assert diagonal.length == pytest.approx(math.hypot(100 * spacing[1], 100 * spacing[0]))
    assert diagonal.text() == f"{diagonal.length:.1f} mm"
    assert measure("line", ((0, 0), (3, 4)), frame.values, None).text() == "5.0 px"


def test_a_measurement_checks_its_kind_and_points():
    with pytest.raises(ValueError, match="kind"):
        Measurement("m1", "circle", ("/x", 0), ((0, 0), (1, 1)))
    with pytest.raises(ValueError, match="exactly 2"):
        Measurement("m1", "line", ("/x", 0), ((0, 0), (1, 1), (2, 2)))


# -- the evented model -----------------------------------------------------------------------------
def test_the_model_announces_adds_moves_notes_and_deletes():
    model = AnnotationsModel()
    seen = []
    model.events.annotations.connect(lambda value: seen.append(value))
    made = model.add("line", ("/a.dcm", 0), ((0, 0), (3, 4)))
    assert model.selected == made.ident
    model.move(made.ident, ((0, 0), (6, 8)), None)
    model.set_note(("/a.dcm", 0), "enhancing rim")
    assert model.is_key(("/a.dcm", 0))
    assert model.toggle_key(("/a.dcm", 0)) is False
    model.delete(made.ident)
    assert len(seen) == 5 and not model.annotations and model.selected == ""


# -- the sidecar -----------------------------------------------------------------------------------
def _study_annotations(folder: Path) -> Annotations:
    files = _files(folder)
    frame = load_frame(FrameRef(files[3], kind="dicom"))
    spacing = pixel_spacing(frame.tags)
    line = measured(Measurement("m1", "line", frame_key(files[3], 0), ((40.0, 60.0), (180.0, 60.0))),
                    frame.values, spacing)
    ellipse = measured(Measurement("m2", "ellipse", frame_key(files[3], 0), ((100.0, 90.0), (140.0, 120.0)),
                                   label="ventricle"), frame.values, spacing)
    return Annotations((line, ellipse), (KeyImage(frame_key(files[3], 0), "midline, note ü"),
                                         KeyImage(frame_key(files[7], 0), "")))


def test_the_sidecar_round_trips_beside_a_writable_study(series_copy):
    found = _study_annotations(series_copy)
    written = sidecar.save(found, _files(series_copy), fallback_dir=series_copy.parent / "elsewhere")
    assert written == [series_copy / SIDECAR_NAME]
    data = json.loads(written[0].read_text(encoding="utf-8"))
    assert (data["format"], data["version"]) == ("brainscan-annotations", sidecar.FORMAT_VERSION)
    uid = str(pydicom.dcmread(_files(series_copy)[3], stop_before_pixels=True).SOPInstanceUID)
    assert data["measurements"][0]["frame"] == {"file": _files(series_copy)[3].name, "frame": 0,
                                                "sop_instance_uid": uid}
    assert sidecar.load(_files(series_copy)) == found
    # discovery does not count it as a skipped non-image
    assert not find_inputs([series_copy]).skipped


def test_a_moved_and_renamed_study_keeps_its_annotations(series_copy, tmp_path):
    found = _study_annotations(series_copy)
    sidecar.save(found, _files(series_copy))
    moved = tmp_path / "moved" / "study"
    shutil.copytree(series_copy, moved)
    moved.chmod(0o755)
    for path in _files(moved):  # renamed too: DICOM frames are found by their SOP Instance UID
        path.rename(path.with_name("renamed-" + path.name))
    again = sidecar.load(_files(moved))
    assert len(again.measurements) == 2 and len(again.key_images) == 2
    first = again.measurements[0]
    assert Path(first.frame[0]).parent == moved.resolve()
    assert Path(first.frame[0]).name == "renamed-" + Path(found.measurements[0].frame[0]).name
    assert first.figures == found.measurements[0].figures
    assert [k.note for k in again.key_images] == ["midline, note ü", ""]


def test_saving_with_one_file_open_keeps_the_annotations_of_the_others(series_copy):
    found = _study_annotations(series_copy)
    files = _files(series_copy)
    sidecar.save(found, files)
    only = [files[7]]  # a single file of the study opened: its key image is edited, the others are kept
    one = sidecar.load(only)
    assert one.key_images == (KeyImage(frame_key(files[7], 0), ""),) and not one.measurements
    sidecar.save(Annotations((), (KeyImage(frame_key(files[7], 0), "edited"),)), only)
    again = sidecar.load(files)
    assert again.measurements == found.measurements
    assert {k.note for k in again.key_images} == {"midline, note ü", "edited"}


def test_a_read_only_study_keeps_its_sidecar_in_the_fallback_folder(shared_data_dir, tmp_path):
    study = shared_data_dir / "dicom" / "sagittal-t1-brain"
    if sidecar.folder_writable(study):
        pytest.skip("the shared series is writable here")
    files = sorted(study.iterdir())
    found = Annotations((), (KeyImage(frame_key(files[0], 0), "first"),))
    written = sidecar.save(found, files, tmp_path / "fallback")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert written == [tmp_path / "fallback" / sidecar.fallback_name(study_uid, study)]
    assert sidecar.load(files, tmp_path / "fallback") == found
    assert not (study / SIDECAR_NAME).exists()


def test_two_folders_with_the_same_idents_keep_all_their_measurements(tmp_path, real_jpgs):
    pictures = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pictures.append(Path(shutil.copy(real_jpgs[0], tmp_path / name / "scan.jpg")))
        sidecar.save(Annotations((Measurement("m1", "line", frame_key(pictures[-1], 0), ((0, 0), (3, 4))),), ()),
                     [pictures[-1]])
    found = sidecar.load(pictures)
    assert sorted(m.ident for m in found.measurements) == ["m1", "m2"]
    assert {m.frame for m in found.measurements} == {frame_key(p, 0) for p in pictures}
    assert found.merged(found) == found


def test_a_sidecar_of_a_newer_format_is_refused_with_the_fix(tmp_path):
    data = {"format": "brainscan-annotations", "version": sidecar.FORMAT_VERSION + 1}
    with pytest.raises(InputError, match="newer brainscan"):
        sidecar.from_json(data, lambda _ident: None, source=tmp_path / SIDECAR_NAME)


def test_pictures_are_named_relative_to_the_sidecar(tmp_path, real_jpgs):
    folder = tmp_path / "pictures"
    folder.mkdir()
    picture = Path(shutil.copy(real_jpgs[0], folder / "scan.jpg"))
    found = Annotations((Measurement("m1", "rectangle", frame_key(picture, 0), ((1, 1), (5, 5))),), ())
    sidecar.save(found, [picture])
    assert json.loads((folder / SIDECAR_NAME).read_text())["measurements"][0]["frame"] == {"file": "scan.jpg",
                                                                                          "frame": 0}
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    assert sidecar.load([moved / "scan.jpg"]).measurements[0].frame == frame_key(moved / "scan.jpg", 0)


# -- the reports of `brainscan screen` on a folder with a sidecar ------------------------------------
def _run(arguments: list[str]) -> int:
    with contextlib.redirect_stderr(io.StringIO()):
        return main(arguments)


def test_screen_reports_carry_the_measurements_and_key_images(series_copy, tmp_path):
    found = _study_annotations(series_copy)
    sidecar.save(found, _files(series_copy))
    model = build_tiny_model(tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    status = _run(["screen", str(series_copy), "--out", str(out), "--model", str(model), "--device", "cpu",
                   "--report", "pdf,html,dicom"])
    assert status == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Measurements and key images" in html and "midline, note ü" in html and "ventricle" in html
    assert f"{found.measurements[0].figures.length:.1f} mm" in html
    import pypdf

    pdf = "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(str(out / "report.pdf")).pages)
    assert "Measurements and key images" in pdf and "ventricle" in pdf
    (report,) = sorted((out / "dicom").glob("SR-*.dcm"))
    ds = pydicom.dcmread(report)
    numbers, texts, regions = _sr_items(ds.ContentSequence)
    length = found.measurements[0].figures.length
    assert any(name == "Length" and unit == "mm" and value == pytest.approx(length, abs=1e-3)
               for name, value, unit in numbers)
    assert any(name == "Area" and unit == "mm2" for name, _value, unit in numbers)
    assert any(name == "Mean" for name, _value, _unit in numbers)
    assert ("Key Object Description", "midline, note ü") in texts
    assert {"POLYLINE", "ELLIPSE"} <= {kind for kind, _uid in regions}
    uid = str(pydicom.dcmread(_files(series_copy)[3], stop_before_pixels=True).SOPInstanceUID)
    assert all(ref == uid for _kind, ref in regions)
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    result = subprocess.run(["dciodvfy", str(report)], capture_output=True, text=True, timeout=60, errors="replace")
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def _sr_items(sequence, numbers=None, texts=None, regions=None):
    """(NUM name, value, unit), (TEXT name, value) and (SCOORD graphic type, referenced SOP) of an SR tree."""
    if numbers is None:
        numbers, texts, regions = [], [], []
    for item in sequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "NUM":
            measured_value = item.MeasuredValueSequence[0]
            numbers.append((name, float(measured_value.NumericValue),
                            measured_value.MeasurementUnitsCodeSequence[0].CodeValue))
        elif item.ValueType == "TEXT":
            texts.append((name, str(item.TextValue)))
        elif item.ValueType == "SCOORD":
            image = item.ContentSequence[0].ReferencedSOPSequence[0]
            regions.append((str(item.GraphicType), str(image.ReferencedSOPInstanceUID)))
        if "ContentSequence" in item:
            _sr_items(item.ContentSequence, numbers, texts, regions)
    return numbers, texts, regions


def test_deidentified_srs_leave_out_the_free_text_but_keep_the_figures(series_copy, tmp_path):
    found = _study_annotations(series_copy)
    sidecar.save(found, _files(series_copy))
    model = build_tiny_model(tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    status = _run(["screen", str(series_copy), "--out", str(out), "--model", str(model), "--device", "cpu",
                   "--report", "dicom", "--deidentify"])
    assert status == 0
    (report,) = sorted((out / "dicom").glob("SR-*.dcm"))
    numbers, texts, regions = _sr_items(pydicom.dcmread(report).ContentSequence)
    assert any(name == "Length" for name, _value, _unit in numbers) and len(regions) == 2
    assert ("Key Object Description", "key image") in texts
    assert not any("midline" in value or "ventricle" in value for _name, value in texts)
    source = str(pydicom.dcmread(_files(series_copy)[3], stop_before_pixels=True).SOPInstanceUID)
    assert all(ref != source for _kind, ref in regions)  # the de-identified image's UID
