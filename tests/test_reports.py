"""`brainscan screen --report pdf,html,dicom` end to end on real slices, with a tiny model.

Inputs: one real Kaggle JPG per class, a three-slice MR study and a multi-frame secondary capture
built from real slices by ``dicom_factory`` (they carry the factory's patient identifiers).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

import dicom_factory as factory
from brainscan import RESEARCH_USE_NOTICE
from brainscan.cli import main
from brainscan.engine.input.picture_checks import HEAT_OUTSIDE_WARNING
from brainscan.engine.reports import ReportError, ReviewRule, parse_formats
from brainscan.engine.reports import common as report_common
from brainscan.engine.reports.content import build_content
from brainscan.engine.reports.html_report import render_html
from brainscan.engine.results.names import display_name, display_text
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.rows import read_records
from tiny_models import FOUR_CLASSES, build_tiny_model

pypdf = pytest.importorskip("pypdf")

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
IDENTIFIERS = ("Doe^Jane", "BS-000123", "19700101", "ACC0001", "Example Hospital", "Who^Doctor")
PATIENT_IDENTIFIERS = ("Doe^Jane", "BS-000123", "19700101")


# -- inputs and runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def write_study(folder: Path, images: list[Path]) -> list[Path]:
    """An axial MR series of real slices: one study, one series, 2 mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index, image in enumerate(images):
        pixels = factory.twelve_bit(factory.read_grey(image), seed=index)
        ds = factory.new_dataset(
            pixels, series_uid=series, StudyInstanceUID=study, InstanceNumber=index + 1,
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[-100.0, -100.0, 2.0 * index],
            PixelSpacing=[0.9, 0.9], SliceThickness=2.0, WindowCenter=500, WindowWidth=1000, Manufacturer="Example",
        )
        paths.append(factory.save(ds, folder / f"slice{index + 1}.dcm"))
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    if not factory.KAGGLE_TRAINING.is_dir():
        pytest.skip(f"the Kaggle training JPGs are not at {factory.KAGGLE_TRAINING}")
    root = tmp_path_factory.mktemp("inputs")
    raster = root / "raster"
    raster.mkdir()
    jpgs = []
    for category in FOUR_CLASSES:
        source = factory.kaggle_images(1, category, start=3)[0]
        jpgs.append(Path(shutil.copy(source, raster / source.name)))
    slices = write_study(root / "dicom" / "study", factory.kaggle_images(3, "meningioma", start=40))
    frames = [factory.twelve_bit(factory.read_grey(p), seed=n) for n, p in
              enumerate(factory.kaggle_images(2, "pituitary", start=40))]
    multiframe = factory.write_multiframe(root / "dicom" / "multiframe.dcm", frames)
    return SimpleNamespace(root=root, raster=raster, jpgs=jpgs, slices=slices, multiframe=multiframe,
                           dicom=[*slices, multiframe])


def run(arguments: list[str]) -> tuple[int, str]:
    """``brainscan`` in-process: (exit status, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            status = main(arguments)
        except SystemExit as exc:  # argparse refusals
            status = int(exc.code or 0)
    return status, stderr.getvalue()


def screen(paths: list[Path], out: Path, model: Path, *extra: str) -> tuple[int, str]:
    return run(["screen", *map(str, paths), "--out", str(out), "--model", str(model), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def full_run(inputs, model, tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("run") / "out"
    status, err = screen([inputs.root], out, model, "--report", "pdf,html,dicom")
    return SimpleNamespace(out=out, status=status, err=err)


@pytest.fixture(scope="module")
def deidentified_run(inputs, model, tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("deid") / "out"
    status, err = screen([inputs.root / "dicom"], out, model, "--report", "pdf,html,dicom", "--deidentify")
    return SimpleNamespace(out=out, status=status, err=err)


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def records(out: Path) -> list[FrameRecord]:
    return list(read_records(out / "results.csv", FOUR_CLASSES))


def pdf_pages(path: Path) -> list[str]:
    return [page.extract_text() or "" for page in pypdf.PdfReader(str(path)).pages]


def dicom_objects(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted((out / "dicom").glob("*.dcm"))]


def sr_image_references(ds: pydicom.Dataset) -> list[tuple[str, list[int]]]:
    """(SOP Instance UID, frame numbers) of every IMAGE item in an SR content tree."""
    found = []

    def walk(items):
        for item in items:
            if item.get("ValueType") == "IMAGE":
                reference = item.ReferencedSOPSequence[0]
                frames = reference.get("ReferencedFrameNumber")
                if frames is None:
                    frames = []
                elif not isinstance(frames, MultiValue):
                    frames = [frames]
                found.append((str(reference.ReferencedSOPInstanceUID), [int(f) for f in frames]))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return found


def normalised(text: str) -> str:
    return re.sub(r"\s+", "", text)


# -- options and rules -----------------------------------------------------------------------------
def test_report_formats_parse_in_a_fixed_order_without_repeats():
    assert parse_formats("html,PDF, html") == ("pdf", "html")
    assert parse_formats("dicom") == ("dicom",)
    with pytest.raises(ReportError, match="'xls'"):
        parse_formats("pdf,xls")
    with pytest.raises(ReportError):
        parse_formats("")


def test_unknown_report_format_exits_two_with_one_line(inputs, model, tmp_path):
    status, err = screen(inputs.jpgs[:1], tmp_path / "out", model, "--report", "pdf,xls")
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "'xls'" in err and "pdf, html, dicom" in err
    assert not (tmp_path / "out").exists()


def test_review_flags_low_confidence_and_close_calls_with_parameters():
    rule = ReviewRule()
    assert rule.reasons({"glioma": 0.9, "meningioma": 0.05, "notumor": 0.03, "pituitary": 0.02}) == []
    low = rule.reasons({"glioma": 0.5, "meningioma": 0.2, "notumor": 0.2, "pituitary": 0.1})
    assert len(low) == 1 and "low confidence" in low[0]
    close = rule.reasons({"glioma": 0.62, "meningioma": 0.38, "notumor": 0.0, "pituitary": 0.0})
    assert close == []
    close = rule.reasons({"glioma": 0.55, "meningioma": 0.45, "notumor": 0.0, "pituitary": 0.0})
    assert len(close) == 2 and "within 0.15" in close[1]
    strict = ReviewRule(min_confidence=0.95, margin=0.9)
    assert len(strict.reasons({"glioma": 0.9, "meningioma": 0.1})) == 2
    with pytest.raises(ValueError):
        ReviewRule(min_confidence=1.5)


# -- PDF and HTML ----------------------------------------------------------------------------------
def test_full_run_writes_every_report_and_says_raster_images_have_no_dicom(full_run, inputs):
    assert full_run.status == 0, full_run.err
    assert "Traceback" not in full_run.err
    assert "4 raster images have no DICOM output; DICOM objects are written for DICOM inputs only" in full_run.err
    for name in ("report.pdf", "report.html", "results.csv", "results.json"):
        assert (full_run.out / name).is_file()
    assert len(list((full_run.out / "thumbnails").glob("*.png"))) == len(rows(full_run.out)) == 4 + 3 + 2
    assert not list(full_run.out.rglob("*.tmp"))


def test_pdf_holds_classes_probabilities_model_card_provenance_and_the_notice_on_every_page(full_run, inputs):
    pages = pdf_pages(full_run.out / "report.pdf")
    assert len(pages) >= 2
    for number, text in enumerate(pages, 1):
        assert RESEARCH_USE_NOTICE in text, f"page {number} lacks the notice"
    text = "\n".join(pages)
    flat = normalised(text)
    for name in FOUR_CLASSES:
        assert normalised(f"p({display_name(name)})") in flat
    for row in rows(full_run.out):
        assert f"{float(row['p_glioma']):.3f}" in text
        assert display_name(row["label"]) in text
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    for fact in (run["model"]["sha256"], run["onnxruntime"], "CPUExecutionProvider", "gradcam", "tiny-conv",
                 "tiny-test-model", "Modelcard", "Provenance", "Heatmaps"):
        assert normalised(fact) in flat, fact
    assert normalised(str(pydicom.dcmread(inputs.slices[0]).SOPInstanceUID)) in flat
    assert normalised(factory_sha256(inputs.jpgs[0])) in flat
    reader = pypdf.PdfReader(str(full_run.out / "report.pdf"))
    assert len(reader.pages[1].images) + sum(len(p.images) for p in reader.pages) > 0  # real pictures inside


def factory_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_html_is_self_contained_and_holds_the_same(full_run):
    html = (full_run.out / "report.html").read_text(encoding="utf-8")
    assert "<link" not in html.lower() and "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html, re.IGNORECASE)
    assert "url(" not in html  # no external CSS resources either
    sources = re.findall(r"""src=['"]([^'"]+)['"]""", html)
    assert len(sources) == 9 + 1  # nine thumbnails and the colour bar
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.count(RESEARCH_USE_NOTICE) >= 2
    for row in rows(full_run.out):
        assert f"{float(row['p_pituitary']):.3f}" in html
    for name in FOUR_CLASSES:
        assert f"p({display_name(name)})" in html
    assert "Model card" in html and "Provenance" in html and "Series" in html
    flagged = sum(bool(ReviewRule().reasons({c: float(r[f"p_{c}"]) for c in FOUR_CLASSES})) for r in rows(full_run.out))
    warned = sum(r["in_domain"] == "false" or float(r["heat_outside"] or 0) > HEAT_OUTSIDE_WARNING
                 for r in rows(full_run.out))
    marked = sum(bool(ReviewRule().reasons({c: float(r[f"p_{c}"]) for c in FOUR_CLASSES}))
                 or r["in_domain"] == "false" or float(r["heat_outside"] or 0) > HEAT_OUTSIDE_WARNING
                 for r in rows(full_run.out))
    assert html.count("<tr class=flag>") == marked  # a review flag or a warning of the picture checks
    assert html.count("% of the heat map lies outside the head") + html.count("OUT OF DOMAIN: ") == 2 * warned
    assert html.count("REVIEW: ") == 2 * flagged  # in the table and under the thumbnail


def test_thumbnails_are_capped_and_the_report_says_so(full_run):
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    content = build_content(full_run.out, records(full_run.out), run, FOUR_CLASSES, max_thumbnails=3, max_table_rows=4)
    assert len(content.gallery) == 3
    tumour = sorted((float(r["tumour_probability"]) for r in rows(full_run.out)), reverse=True)
    assert [e.tumour_probability for e in content.gallery] == pytest.approx(tumour[:3], abs=1e-6)
    assert len(content.table) == 4
    html = render_html(content)
    assert "the 3 most suspicious of 9 classified frames" in html
    assert "the 4 most suspicious of 9 frames" in html


# -- DICOM -----------------------------------------------------------------------------------------
def test_dicom_objects_reread_with_the_right_classes_study_and_references(full_run, inputs):
    sources = {str(p): pydicom.dcmread(p) for p in inputs.dicom}
    by_sop = {str(ds.SOPInstanceUID): ds for ds in sources.values()}
    objects = dicom_objects(full_run.out)
    captures = [ds for ds in objects if ds.SOPClassUID == SECONDARY_CAPTURE]
    reports = [ds for ds in objects if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    assert len(captures) == 5 and len(reports) == 2 and len(objects) == 7
    for ds in captures:
        reference = ds.SourceImageSequence[0]
        source = by_sop[str(reference.ReferencedSOPInstanceUID)]
        assert reference.ReferencedSOPClassUID == source.SOPClassUID
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
        assert ds.pixel_array.shape[0] > source.Rows  # the caption strip below the slice
        assert "RESEARCH USE ONLY" in ds.SeriesDescription
        assert ds.PatientName == "Doe^Jane"  # patient module kept without --deidentify
        if source.SOPClassUID == factory.MULTIFRAME_GREY_WORD_SC:
            assert int(reference.ReferencedFrameNumber) in (1, 2)
        equipment = ds.ContributingEquipmentSequence[0]
        assert equipment.Manufacturer == "brainscan"
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109103"
    assert len({ds.SeriesInstanceUID for ds in captures}) == 2  # one new series per source series
    referenced = set()
    for ds in reports:
        assert "RESEARCH USE ONLY" in ds.SeriesDescription
        assert ("brainscan", "109103") in {(item.Manufacturer, item.PurposeOfReferenceCodeSequence[0].CodeValue)
                                           for item in ds.ContributingEquipmentSequence}
        references = sr_image_references(ds)
        studies = {by_sop[uid].StudyInstanceUID for uid, _ in references}
        assert studies == {ds.StudyInstanceUID}
        referenced |= {(uid, tuple(frames)) for uid, frames in references}
    multiframe_uid = str(sources[str(inputs.multiframe)].SOPInstanceUID)
    assert (multiframe_uid, (1,)) in referenced and (multiframe_uid, (2,)) in referenced
    assert {uid for uid, _ in referenced} == set(by_sop)


def test_structured_report_codes_the_class_and_names_the_algorithm(full_run):
    report = next(ds for ds in dicom_objects(full_run.out) if ds.SOPClassUID == COMPREHENSIVE_3D_SR)
    codes, texts = [], []

    def walk(items):
        for item in items:
            if item.ValueType == "CODE":
                codes.append((item.ConceptNameCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodeValue))
            if item.ValueType == "TEXT":
                texts.append((item.ConceptNameCodeSequence[0].CodeMeaning, item.TextValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(report.ContentSequence)
    assert report.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    findings = {value for name, value in codes if name == "121071"}
    assert findings and findings <= {"GLIOMA", "302820008", "281900007", "254956000"}
    assert ("Algorithm Name", "brainscan") in texts
    assert any(name == "Algorithm Parameters" and "tiny-test-model 0.0.1" in value for name, value in texts)


def test_dicom_objects_pass_dciodvfy(full_run, deidentified_run):
    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI") == "true":  # .ci/system-packages.sh installs dicom3tools: never skip there
            pytest.fail("dciodvfy is missing in CI: .ci/system-packages.sh should have installed dicom3tools")
        pytest.skip("dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools")
    paths = sorted((full_run.out / "dicom").glob("*.dcm")) + sorted((deidentified_run.out / "dicom").glob("*.dcm"))
    assert paths
    for path in paths:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"


# -- privacy ---------------------------------------------------------------------------------------
def test_no_patient_identifiers_in_csv_json_html_or_pdf_without_keep_identifiers(full_run):
    texts = {
        "results.csv": (full_run.out / "results.csv").read_text(),
        "results.json": (full_run.out / "results.json").read_text(),
        "series.csv": (full_run.out / "series.csv").read_text(),
        "report.html": (full_run.out / "report.html").read_text(),
        "report.pdf": "\n".join(pdf_pages(full_run.out / "report.pdf")),
    }
    for name, text in texts.items():
        for value in IDENTIFIERS:
            assert value not in text, f"{value!r} in {name}"


def test_deidentified_dicom_carries_no_identifiers_and_keeps_linkage_within_the_run(deidentified_run, inputs):
    assert deidentified_run.status == 0, deidentified_run.err
    originals = {str(pydicom.dcmread(p).SOPInstanceUID) for p in inputs.dicom}
    original_studies = {str(pydicom.dcmread(p).StudyInstanceUID) for p in inputs.dicom}
    objects = dicom_objects(deidentified_run.out)
    assert len(objects) == 7
    for path in (deidentified_run.out / "dicom").glob("*.dcm"):
        data = path.read_bytes()
        for value in IDENTIFIERS:
            assert value.encode() not in data, f"{value!r} in {path.name}"
        for uid in originals | original_studies:
            assert uid.encode() not in data, f"source UID in {path.name}"
    for ds in objects:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.PatientBirthDate == ""
        purposes = {item.PurposeOfReferenceCodeSequence[0].CodeValue for item in ds.ContributingEquipmentSequence}
        assert {"109103", "109104"} <= purposes
    captures = [ds for ds in objects if ds.SOPClassUID == SECONDARY_CAPTURE]
    reports = [ds for ds in objects if ds.SOPClassUID == COMPREHENSIVE_3D_SR]
    studies = {ds.StudyInstanceUID for ds in objects}
    assert len(studies) == 2 and not studies & original_studies
    capture_sources = {str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) for ds in captures}
    report_sources = {uid for ds in reports for uid, _ in sr_image_references(ds)}
    assert capture_sources == report_sources and len(capture_sources) == 4
    for ds in reports:
        study_of_capture = {c.StudyInstanceUID for c in captures
                            if str(c.SourceImageSequence[0].ReferencedSOPInstanceUID) in
                            {uid for uid, _ in sr_image_references(ds)}}
        assert study_of_capture == {ds.StudyInstanceUID}
    assert len({ds.PatientID for ds in objects}) == 1  # one pseudonym for the one patient
    html = (deidentified_run.out / "report.html").read_text()
    assert all(uid not in html for uid in originals)
    assert all(uid in html for uid in capture_sources)


def test_keep_identifiers_brings_them_into_the_reports(inputs, model, tmp_path):
    out = tmp_path / "out"
    status, err = screen(inputs.slices[:1], out, model, "--report", "html", "--keep-identifiers")
    assert status == 0, err
    assert "Doe^Jane" in (out / "report.html").read_text()


def test_deidentify_choice_cannot_change_in_the_same_folder(inputs, model, tmp_path):
    out = tmp_path / "out"
    assert screen(inputs.slices[:1], out, model, "--report", "dicom")[0] == 0
    status, err = screen(inputs.slices[:2], out, model, "--report", "dicom", "--deidentify")
    assert status == 2
    assert "without --deidentify" in err and len(err.strip().splitlines()) == 1


# -- resume and failures ---------------------------------------------------------------------------
def test_resumed_run_rebuilds_reports_from_the_csv_with_the_same_dicom_series(inputs, model, tmp_path):
    out = tmp_path / "out"
    assert screen(inputs.slices[:2], out, model, "--report", "html,dicom")[0] == 0
    first = {p.name: pydicom.dcmread(p) for p in (out / "dicom").glob("SC-*.dcm")}
    status, err = screen(inputs.slices, out, model, "--report", "html,dicom")
    assert status == 0, err
    assert "2 of 3 frames already done" in err
    captures = {p.name: pydicom.dcmread(p) for p in (out / "dicom").glob("SC-*.dcm")}
    assert len(captures) == 3
    assert len({ds.SeriesInstanceUID for ds in captures.values()}) == 1
    for name, ds in first.items():
        assert captures[name].SOPInstanceUID == ds.SOPInstanceUID
    (report,) = [pydicom.dcmread(p) for p in (out / "dicom").glob("SR-*.dcm")]
    assert len(sr_image_references(report)) == 3
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3 + 1


def test_raster_only_dicom_report_says_why_and_keeps_results(inputs, model, tmp_path):
    out = tmp_path / "out"
    status, err = screen(inputs.jpgs, out, model, "--report", "dicom")
    assert status == 2
    assert "4 raster images have no DICOM output; DICOM objects are written for DICOM inputs only" in err
    assert len(rows(out)) == 4
    assert not list((out / "dicom").glob("*.dcm"))


def test_unwritable_output_folder_is_one_line(inputs, model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status, err = screen(inputs.jpgs[:1], blocker / "out", model, "--report", "pdf")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unwritable_report_folder_keeps_the_results_of_earlier_runs(inputs, model, tmp_path):
    out = tmp_path / "out"
    assert screen(inputs.jpgs[:2], out, model)[0] == 0
    before = (out / "results.csv").read_bytes()
    (out / "thumbnails").write_text("a file where the folder should be")
    status, err = screen(inputs.jpgs, out, model, "--report", "pdf")
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "thumbnails" in lines[0] and "Traceback" not in err
    assert (out / "results.csv").read_bytes() == before


def test_disk_full_while_writing_a_report_is_one_line_and_keeps_everything(inputs, model, tmp_path, monkeypatch):
    real_write = report_common.write_atomic

    def full_disk(path: Path, data: bytes) -> None:
        if path.suffix == ".pdf":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(report_common, "write_atomic", full_disk)
    out = tmp_path / "out"
    status, err = screen(inputs.jpgs, out, model, "--report", "pdf,html")
    assert status == 2
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and "disk is full" in lines[0] and "results.csv" in lines[0]
    assert "Traceback" not in err
    assert len(rows(out)) == 4 and (out / "results.json").is_file()
    assert (out / "report.html").is_file() and not (out / "report.pdf").exists()
    assert len(list((out / "thumbnails").glob("*.png"))) == 4
    assert not list(out.rglob("*.tmp"))


def test_disk_full_while_screening_stops_with_one_line_and_keeps_the_rows(inputs, model, tmp_path, monkeypatch):
    real_write = report_common.write_atomic
    written = []

    def full_after_two(path: Path, data: bytes) -> None:
        if path.suffix == ".png" and len(written) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        real_write(path, data)

    monkeypatch.setattr(report_common, "write_atomic", full_after_two)
    out = tmp_path / "out"
    status, err = screen(inputs.jpgs, out, model, "--report", "html", "--batch-size", "1")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "disk is full" in err and "Traceback" not in err
    assert 2 < len(rows(out)) <= 4  # rows already written are kept (the third was written before its thumbnail)
    assert (out / "results.json").is_file()


def test_a_stricter_review_rule_flags_every_frame_in_both_reports(full_run):
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    content = build_content(full_run.out, records(full_run.out), run, FOUR_CLASSES,
                            rule=ReviewRule(min_confidence=0.999, margin=0.999))
    assert content.counts["flagged"] == 9
    html = render_html(content)
    assert html.count("<tr class=flag>") == 9 and "9 flagged for review" in html
    from brainscan.engine.reports.pdf_report import render_pdf

    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages)
    assert text.count("REVIEW:") == 2 * 9  # in the table and under each thumbnail


def test_both_reports_show_each_series_verdict_and_the_rule_once(full_run):
    from html import escape

    from brainscan.engine.reports.pdf_report import render_pdf
    from brainscan.engine.results.verdict import VerdictRule

    series = json.loads((full_run.out / "results.json").read_text())["series"]
    assert len(series) == 2 and all(entry["verdict"] and entry["verdict_text"] for entry in series)
    sentence = VerdictRule().describe()
    html = (full_run.out / "report.html").read_text(encoding="utf-8")
    assert html.count(escape(sentence)) == 1
    flat = normalised("\n".join(pdf_pages(full_run.out / "report.pdf")))
    assert flat.count(normalised(sentence)) == 1
    for entry in series:
        shown = display_text(entry["verdict_text"], entry["verdict"])  # the raw name stays in results.json
        assert escape(shown) in html and normalised(shown) in flat
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    strict = VerdictRule(min_in_domain_share=1.0, min_probability=0.99)
    content = build_content(full_run.out, records(full_run.out), run, FOUR_CLASSES, verdict_rule=strict)
    assert escape(strict.describe()) in render_html(content)
    pdf = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages)
    assert normalised(strict.describe()) in normalised(pdf)


def test_model_card_shows_the_validation_metrics_of_the_contract(full_run):
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    run["model"]["metrics"] = {"validation": {
        "images": 812, "accuracy": 0.9421, "macro_f1": 0.9388,
        "per_class": {name: {"precision": 0.9, "recall": 0.91, "f1": 0.905, "support": 203} for name in FOUR_CLASSES},
        "caveat": "validation comes from the same public data set as training",
    }}
    content = build_content(full_run.out, records(full_run.out), run, FOUR_CLASSES)
    html = render_html(content)
    for fact in ("0.9421", "macro f1", "0.9388", "812", "0.905", "same public data set"):
        assert fact in html
    from brainscan.engine.reports.pdf_report import render_pdf

    text = normalised("\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages))
    for fact in ("0.9421", "0.9388", "samepublicdataset"):
        assert fact in text


def test_patient_orientation_follows_the_dominant_axes():
    from brainscan.engine.reports.dicom_outputs import patient_orientation

    axial = pydicom.Dataset()
    axial.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    assert patient_orientation(axial) == ("L", "P")
    sagittal = pydicom.Dataset()
    sagittal.ImageOrientationPatient = [0, 0.96, -0.2, 0, 0.1, -0.99]
    assert patient_orientation(sagittal) == ("P", "F")
    assert patient_orientation(pydicom.Dataset()) is None


def test_the_model_facts_say_where_the_test_time_views_are_averaged():
    from brainscan.engine.reports.content import model_facts

    def views(card):
        return dict(model_facts({"model": card}))["Test-time augmentation"]

    assert views({"views_in_graph": ["hflip"], "test_time_augmentation": []}) == "hflip (inside the model)"
    assert views({"test_time_augmentation": ["hflip"]}) == "hflip (by brainscan)"
    assert views({}) == "none"


# -- burned-in caption on pictures of any size ------------------------------------------------------
@pytest.mark.parametrize("heated", [False, True], ids=["no-heat", "heat"])
@pytest.mark.parametrize("size", [(1, 1), (4, 4), (6, 4), (4, 6), (8, 600), (600, 8)], ids=lambda s: "x".join(map(str, s)))
def test_burn_in_gives_every_picture_size_the_whole_caption_and_keeps_its_pixels(size, heated):
    import cv2
    import numpy as np

    from brainscan.engine.model.overlay import blend
    from brainscan.engine.reports.dicom_outputs import CAPTION_MARGIN, burn_in

    height, width = size
    source = factory.read_rgb(factory.kaggle_images(1, "glioma", start=7)[0])
    picture = cv2.resize(source, (width, height), interpolation=cv2.INTER_AREA).reshape(height, width, 3)
    heat = np.linspace(0.0, 1.0, height * width, dtype=np.float32).reshape(height, width) if heated else None
    lines = ["meningioma 0.98 (tumour p 0.97) | gradcam++", "RESEARCH USE ONLY - not for diagnosis"]

    out = burn_in(picture, heat, lines)

    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.c_contiguous
    assert out.shape[1] >= max(width, 150)  # wide enough for the caption, however small the picture
    left = (out.shape[1] - width) // 2
    expected = blend(picture, heat) if heated else picture
    assert np.array_equal(out[:height, left:left + width], expected)  # the picture's pixels, not resampled
    assert not out[:height, :left].any() and not out[:height, left + width:].any()  # padding is black
    strip = out[height:]
    assert strip.shape[0] > 20 and (strip == 255).all(axis=2).any()  # white text was drawn
    assert not strip[:, -CAPTION_MARGIN:].any()  # and nothing runs off the right edge
    coloured = (strip.max(axis=2).astype(int) - strip.min(axis=2)) > 60
    assert coloured.any() == heated  # the colour bar only with a heat map


def test_secondary_capture_of_a_tiny_dicom_is_made_and_valid(model, tmp_path):
    import cv2

    grey = factory.read_grey(factory.kaggle_images(1, "pituitary", start=5)[0])
    # the smallest frame screened (32 pixels a side, raster.MIN_SIDE), still far narrower than the caption
    tiny = factory.twelve_bit(cv2.resize(grey, (40, 32), interpolation=cv2.INTER_AREA))
    source = factory.save(factory.new_dataset(tiny, ImageOrientationPatient=[1, 0, 0, 0, 1, 0]), tmp_path / "tiny.dcm")
    out = tmp_path / "out"

    status, err = screen([source], out, model, "--report", "dicom")

    assert status == 0, err
    assert "could not be made" not in err
    (path,) = (out / "dicom").glob("SC-*.dcm")
    capture = pydicom.dcmread(path)
    assert capture.Rows > 4 and capture.Columns >= 150
    assert "widened to fit the caption" in capture.DerivationDescription
    if shutil.which("dciodvfy"):
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


# -- PDF text beyond Western European letters ------------------------------------------------------
def test_pdf_escape_sets_runs_helvetica_lacks_in_embedded_fallback_fonts():
    from brainscan.engine.reports.pdf_fonts import escape

    assert escape("scan <1> & café.jpg") == "scan &lt;1&gt; &amp; café.jpg"  # Helvetica shows all of it
    marked = escape("脳腫瘍-<x>-🧠-Łódź")
    assert '<font name="BrainscanDroidSansFallback">脳腫瘍</font>-&lt;x&gt;-' in marked
    assert '<font name="BrainscanNotoEmoji">🧠</font>' in marked
    assert '<font name="BrainscanDejaVuSans">Ł</font>ód<font name="BrainscanDejaVuSans">ź</font>' in marked


def test_pdf_shows_cjk_and_emoji_file_names_with_embedded_fonts(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["脳腫瘍-スライス.jpg", "tumour-🧠.jpg", "뇌종양-Ωμέγα-Łódź.jpg"]
    for name, source in zip(names, factory.kaggle_images(3, "glioma", start=11), strict=True):
        shutil.copy(source, folder / name)
    out = tmp_path / "out"

    status, err = screen([folder], out, model, "--report", "pdf")

    assert status == 0, err
    reader = pypdf.PdfReader(str(out / "report.pdf"))
    text = normalised("\n".join(page.extract_text() or "" for page in reader.pages))
    for name in names:
        assert normalised(name) in text, name  # extracted as written: the right glyphs and ToUnicode maps
    embedded = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is not None and "/FontFile2" in descriptor.get_object():
                embedded[str(font["/BaseFont"]).split("+")[-1]] = True
    assert {"DroidSansFallback", "NotoEmoji-Regular", "DejaVuSans"} <= set(embedded), embedded


def test_thumbnail_note_counts_every_classified_frame_when_one_has_no_thumbnail(full_run, tmp_path):
    out = Path(shutil.copytree(full_run.out, tmp_path / "out"))
    sorted((out / "thumbnails").glob("*.png"))[0].unlink()  # e.g. screened earlier without --report
    run = json.loads((out / "results.json").read_text())["run"]

    content = build_content(out, records(out), run, FOUR_CLASSES, max_thumbnails=3)

    html = render_html(content)
    assert "the 3 most suspicious of the 8 of 9 classified frames that have a thumbnail" in html
    assert "of 8 classified frames" not in html  # nine were classified
    assert "1 classified frame has no thumbnail" in html


def test_reports_show_paths_relative_to_the_inputs_common_folder_named_once(full_run, inputs):
    from brainscan.engine.reports.pdf_report import render_pdf

    run = json.loads((full_run.out / "results.json").read_text())
    assert all(Path(row["path"]).is_absolute() for row in rows(full_run.out))  # results.csv keeps absolute paths
    content = build_content(full_run.out, records(full_run.out), run["run"], FOUR_CLASSES)
    root = str(inputs.root.resolve())
    assert content.common_folder == inputs.root.resolve()
    assert [e.path for e in content.table if e.path.startswith("raster")]  # raster/<name>.jpg, not the absolute path
    assert all(not Path(e.path).is_absolute() for e in content.table) and all(not i.path.startswith("/")
                                                                               for i in content.inputs)
    html = render_html(content)
    assert html.count(root) == 1 and "common folder" in html
    assert "<td>dicom/study/slice1.dcm</td>" in html.replace("\\", "/")
    pdf = normalised("\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages))
    assert pdf.count(normalised(root)) == 1


def test_a_single_input_file_is_shown_by_name_under_its_folder(full_run, inputs):
    one = [r for r in records(full_run.out) if r.path.name == inputs.jpgs[0].name]
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    content = build_content(full_run.out, one, run, FOUR_CLASSES)
    assert content.common_folder == inputs.raster.resolve()
    assert content.table[0].path == inputs.jpgs[0].name and content.inputs[0].path == inputs.jpgs[0].name
    assert str(inputs.raster.resolve()) in content.folder_line()


def test_reports_show_class_display_names_and_the_records_keep_the_raw_ones(full_run):
    from brainscan.engine.reports.pdf_report import render_pdf

    html = (full_run.out / "report.html").read_text(encoding="utf-8")
    assert "<td>No tumour</td>" in html and "p(No tumour)" in html and "<td>notumor</td>" not in html
    labels = {row["label"] for row in rows(full_run.out)}
    assert labels <= set(FOUR_CLASSES)  # results.csv keeps the raw names
    run = json.loads((full_run.out / "results.json").read_text())["run"]
    content = build_content(full_run.out, records(full_run.out), run, FOUR_CLASSES)
    assert [row[0] for row in content.class_rows()[1:]] == ["Glioma", "Meningioma", "No tumour", "Pituitary"]
    pdf = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages)
    assert "No tumour" in pdf and "p(notumor)" not in normalised(pdf)


def test_display_names_of_classes():
    assert [display_name(n) for n in ("glioma", "meningioma", "notumor", "pituitary")] == [
        "Glioma", "Meningioma", "No tumour", "Pituitary"]
    assert display_name("acoustic_neuroma") == "Acoustic Neuroma" and display_name("") == ""
    assert display_text("notumor: 4 of 4 in-domain slices", "notumor") == "No tumour: 4 of 4 in-domain slices"
