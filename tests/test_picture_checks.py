"""Picture checks before the network (issue 13): blank, noise-only, foreground-less frames and mosaics are out of
domain, and every output says so."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from brainscan.cli import main
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.input.picture_checks import check_picture, foreground_fraction, head_mask, heat_outside
from brainscan.engine.reports.content import build_content
from brainscan.engine.reports.html_report import render_html
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.series import summarize_series
from tiny_models import FOUR_CLASSES, build_tiny_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAGGLE = SHARED / "brain-tumor-mri" / "Training"
MIDLINE = SHARED / "dicom" / "sagittal-t1-brain"
MOSAICS = sorted((SHARED / "dicom" / "transfer-syntaxes").glob("*.dcm"))


def frame_of(grey: np.ndarray) -> Frame:
    picture = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    return Frame(FrameRef(Path("made-up.png")), picture, None, None, "none", {})


def test_a_constant_frame_is_out_of_domain_as_blank():
    in_domain, reason = check_picture(frame_of(np.full((224, 224), 128)))
    assert not in_domain and "near-constant" in reason


@pytest.mark.parametrize("side", [224, 512])
def test_a_noise_only_frame_is_out_of_domain_as_noise(side):
    noise = np.random.default_rng(side).integers(0, 256, (side, side))
    in_domain, reason = check_picture(frame_of(noise))
    assert not in_domain and "noise" in reason


def test_a_colour_photograph_is_out_of_domain_before_the_network():
    ood = pytest.importorskip("trainer.ood_pictures")
    rng = np.random.default_rng(11)
    photos = [p for p in (ood.photograph(rng) for _ in range(30)) if not np.array_equal(p[..., 0], p[..., 1])]
    assert len(photos) >= 5
    for photo in photos:
        in_domain, reason = check_picture(Frame(FrameRef(Path("holiday.jpg")), photo, None, None, "none", {}))
        assert not in_domain and "colour picture" in reason


def test_tinted_mri_exports_are_not_taken_for_colour_pictures():
    tinted = [KAGGLE / "notumor" / name for name in ("Tr-no_1397.jpg", "Tr-no_0721.jpg", "Tr-no_0528.jpg")]
    if not all(p.is_file() for p in tinted):
        pytest.skip("the Kaggle training pictures are not here")
    for path in tinted:  # the three most colourful Kaggle pictures (colourfulness 14.6-15.0)
        frame = load_frame(FrameRef(path))
        assert np.ptp(frame.picture.astype(int), axis=2).max() > 0  # really colour-encoded
        assert check_picture(frame) == (True, "")


def test_a_black_frame_with_a_tiny_blob_has_almost_no_foreground():
    grey = np.zeros((224, 224))
    grey[100:110, 100:110] = 200
    in_domain, reason = check_picture(frame_of(grey))
    assert not in_domain and "almost no foreground" in reason
    assert foreground_fraction(frame_of(grey).picture) < 0.01


def test_a_kaggle_picture_and_a_midline_sagittal_slice_are_in_domain():
    jpg = sorted((KAGGLE / "glioma").glob("*.jpg"))[0]
    dicom = sorted(MIDLINE.glob("*.dcm"))[8]
    for ref in (FrameRef(jpg), FrameRef(dicom, kind="dicom")):
        frame = load_frame(ref)
        assert check_picture(frame) == (True, ""), ref.path
        assert 0.2 < foreground_fraction(frame.picture) < 0.9


def test_the_siemens_epi_mosaics_are_flagged_as_mosaics():
    assert len(MOSAICS) == 9
    for path in MOSAICS:
        frame = load_frame(FrameRef(path, kind="dicom"))
        in_domain, reason = check_picture(frame)
        assert not in_domain and "mosaic of 35 tiles" in reason, path


def test_the_heat_outside_share_is_the_mass_outside_the_mask():
    grey = np.zeros((100, 100))
    grey[20:80, 20:80] = 180
    mask = head_mask(frame_of(grey).picture)
    assert mask[50, 50] and not mask[5, 5]
    heat = np.zeros((100, 100))
    heat[50, 50] = 3.0
    heat[5, 5] = 1.0
    assert heat_outside(heat, mask) == pytest.approx(0.25)
    assert math.isnan(heat_outside(np.zeros((100, 100)), mask))


def _record(index: int, probability: float, in_domain: bool | None, reason: str = "") -> FrameRecord:
    return FrameRecord(Path(f"/s/{index}.dcm"), 0, "ok", label="glioma", confidence=probability,
                       tumour_probability=probability, probabilities=dict.fromkeys(FOUR_CLASSES, 0.25),
                       series_uid="1.2", series_index=index, series_length=3, in_domain=in_domain,
                       domain_reason=reason)


def test_the_most_suspicious_slice_skips_an_out_of_domain_slice():
    records = [_record(0, 0.4, True), _record(1, 0.99, False, "mostly noise"), _record(2, 0.6, True)]
    (series,) = summarize_series(records, FOUR_CLASSES)
    assert series.most_suspicious is records[2]
    assert series.out_of_domain == 1 and series.ok == 3


def test_the_report_marks_an_out_of_domain_frame_and_counts_it(tmp_path):
    records = [_record(0, 0.4, True), _record(1, 0.99, False, "mostly noise (a light blur removes 86 %)")]
    content = build_content(tmp_path, records, {}, FOUR_CLASSES)
    assert content.counts["out_of_domain"] == 1
    html = render_html(content)
    assert "OUT OF DOMAIN: mostly noise (a light blur removes 86 %)" in html
    assert "1 out of domain" in html


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_screen_writes_the_domain_columns_and_counts_them_in_its_summary(model, tmp_path, capsys):
    folder = tmp_path / "study"
    folder.mkdir()
    for source in sorted((KAGGLE / "pituitary").glob("*.jpg"))[:2]:
        shutil.copy(source, folder / source.name)
    cv2.imwrite(str(folder / "blank.png"), np.full((224, 224, 3), 40, np.uint8))
    shutil.copy(MOSAICS[0], folder / "mosaic.dcm")
    out = tmp_path / "out"
    assert main(["screen", str(folder), "--out", str(out), "--model", str(model), "--device", "cpu"]) == 0
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert rows["blank.png"]["in_domain"] == "false" and "near-constant" in rows["blank.png"]["domain_reason"]
    assert rows["mosaic.dcm"]["in_domain"] == "false" and "mosaic" in rows["mosaic.dcm"]["domain_reason"]
    for name in rows:
        if name.endswith(".jpg"):
            assert rows[name]["in_domain"] == "true" and rows[name]["domain_reason"] == ""
            assert 0.0 <= float(rows[name]["heat_outside"]) <= 1.0
    assert "4 ok (2 out of domain), 0 failed of 4 frames" in capsys.readouterr().err


def test_heat_outside_from_the_shrunk_mask_agrees_with_the_full_size_mask(real_jpgs):
    from brainscan.engine.input.picture_checks import picture_facts

    picture = cv2.resize(load_frame(FrameRef(real_jpgs[1], kind="raster")).picture, (512, 512))
    rows, cols = np.mgrid[0:512, 0:512]
    heat = np.exp(-((rows - 100) ** 2 + (cols - 400) ** 2) / (2 * 90.0**2))  # a blob near the edge of the head
    facts = picture_facts(picture)
    assert facts.mask.shape[0] < 512  # measured on the shrunk picture
    full = heat_outside(heat, head_mask(picture))
    assert 0.05 < full < 0.95
    assert heat_outside(heat, facts.mask) == pytest.approx(full, abs=0.02)
