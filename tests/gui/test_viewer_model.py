"""The viewer's Qt-free state: navigation, window/level, overlay drawing rules, results and export.

These run without PySide6 (they test ``brainscan.engine.viewer_*``, which never imports Qt).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from brainscan import RESEARCH_USE_NOTICE
from brainscan.engine.input.discovery import discover
from brainscan.engine.input.frames import Frame, FrameRef
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.overlay import blend
from brainscan.engine.results.record import FrameRecord, FrameResult
from brainscan.engine.run.screening import screen
from brainscan.engine.viewer.display import (
    WindowLevel,
    display_image,
    drag_window,
    window_presets,
    windowed_picture,
)
from brainscan.engine.viewer.overlay import (
    PREDICTED,
    HeatCache,
    OverlaySettings,
    compose_export,
    export_caption,
    overlay_lut,
)
from brainscan.engine.viewer.results import (
    RowFilter,
    export_results,
    most_suspicious_keys,
    position,
    series_summary,
)
from brainscan.engine.viewer.state import FrameCache, ViewerSession, frame_key, group_refs, thumbnail


def _refs(series: int = 5, images: int = 3) -> list[FrameRef]:
    refs = [FrameRef(Path(f"/s/IM{i}"), kind="dicom", series_uid="1.2.3", series_index=i, series_length=series)
            for i in range(series)]
    refs += [FrameRef(Path(f"/pics/p{i}.jpg")) for i in range(images)]
    return refs


def test_frames_group_into_series_and_folders_in_first_seen_order():
    groups = group_refs(_refs())
    assert [(g.kind, len(g)) for g in groups] == [("series", 5), ("images", 3)]
    assert groups[0].unit == "slice" and groups[1].unit == "image"


def test_navigation_clamps_within_a_series_and_reports_the_position():
    session = ViewerSession()
    session.add(_refs())
    assert session.position_text() == "slice 1/5"
    assert not session.step(-1)
    assert session.step(3) and session.position_text() == "slice 4/5"
    assert session.step(10) and session.position_text() == "slice 5/5"
    assert session.go_to_end(False) and session.position_text() == "slice 1/5"
    assert session.step_group(1) and session.position_text() == "image 1/3"
    assert session.go_to(frame_key(_refs()[2].path, 0)) and session.position_text() == "slice 3/5"


def test_opening_the_same_frames_again_adds_nothing():
    session = ViewerSession()
    session.add(_refs())
    session.add(_refs())
    assert len(session) == 8 and len(session.groups) == 2


def test_frame_cache_drops_the_least_recently_used_beyond_its_budget():
    def frame(n: int) -> Frame:
        return Frame(FrameRef(Path(f"/f{n}")), np.zeros((10, 10, 3), np.uint8), None, None, "none", {})

    cache = FrameCache(budget_bytes=700)
    for n in range(3):
        cache.put(("f", n), frame(n))
    assert ("f", 0) not in cache and ("f", 2) in cache
    assert cache.used <= 700


def test_thumbnail_keeps_the_aspect_ratio():
    assert thumbnail(np.zeros((200, 100, 3), np.uint8), 64).shape == (64, 32, 3)


def test_dicom_frames_are_windowed_on_their_modality_values(gui_data):
    series = gui_data.series
    sane = next(p for p in series.files_in_order if p not in series.degenerate)
    frame = load_frame(FrameRef(sane, kind="dicom"))
    display = display_image(frame)
    assert display.array.dtype == np.float32 and display.array.shape == frame.values.shape
    assert display.default == WindowLevel(500.0, 1000.0, "tags")
    assert display.levels(display.default) == (0.0, 1000.0)
    names = [p.name for p in window_presets(frame)]
    assert names[0] == "From the DICOM tags" and "Auto (0.5–99.5 %)" in names
    assert any(n.startswith("MR ") for n in names)
    # the picture the model saw is the one the default window draws
    assert np.abs(windowed_picture(display, display.default).astype(int) - frame.picture.astype(int)).max() <= 1


def test_degenerate_window_tags_are_not_offered(gui_data):
    degenerate = next(iter(gui_data.series.degenerate))
    frame = load_frame(FrameRef(degenerate, kind="dicom"))
    assert display_image(frame).default.source == "percentile"
    assert "From the DICOM tags" not in [p.name for p in window_presets(frame)]


def test_dragging_right_widens_and_dragging_down_lowers_the_center():
    start = WindowLevel(500, 1000)
    wider = drag_window(start, 40, 0, robust_range=800)
    assert wider.width > start.width and wider.center == start.center
    lower = drag_window(start, 0, 40, robust_range=800)
    assert lower.center < start.center
    assert drag_window(start, -10_000, 0, robust_range=800).width > 0


def test_overlay_lut_is_transparent_under_the_threshold_and_matches_blend():
    lut = overlay_lut("jet", 0.5)
    assert lut.shape == (256, 4)
    assert (lut[:127, 3] == 0).all() and (lut[128:, 3] == 255).all()
    heat = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    picture = np.zeros((16, 16, 3), np.uint8)
    blended = blend(picture, heat, colormap="jet", opacity=1.0, threshold=0.5)
    index = np.clip(heat * 255 + 0.5, 0, 255).astype(int)
    drawn = np.where(lut[index, 3:] > 0, lut[index, :3], 0)
    assert np.array_equal(blended, drawn.astype(np.uint8))


def test_overlay_settings_refuse_unknown_values():
    with pytest.raises(ValueError, match="unknown CAM method"):
        OverlaySettings(method="nope")
    with pytest.raises(ValueError, match="colour map"):
        OverlaySettings(colormap="nope")


@pytest.fixture(scope="module")
def screened(gui_data, tiny_model):
    classifier = Classifier(tiny_model, "cpu")
    refs = discover([gui_data.series.folder, gui_data.broken])
    return classifier, list(screen(refs, classifier, cam_method="gradcam", keep_frames=True))


def test_heat_maps_come_from_the_stored_features_and_are_cached(screened):
    classifier, results = screened
    result = next(r for r in results if r.ok)
    cache = HeatCache()
    settings = OverlaySettings()
    target = settings.resolve_target(result.prediction)
    assert target == result.prediction.label_index
    shape = result.frame.picture.shape[:2]
    first = cache.heat("k", result.prediction, classifier.cam_weight, classifier.contract, "gradcam", target, shape)
    again = cache.heat("k", result.prediction, classifier.cam_weight, classifier.contract, "gradcam", target, shape)
    assert first is again and cache.computed == 1
    assert first.shape == shape and first.min() >= 0.0 and first.max() <= 1.0
    other = OverlaySettings(target=(target + 1) % 4).resolve_target(result.prediction)
    assert other != target and OverlaySettings(method="eigencam", target=PREDICTED).resolve_target(result.prediction) == 0


def records_of(results: list[FrameResult], classes: tuple[str, ...]) -> list[FrameRecord]:
    return [FrameRecord.from_result(r, classes, "gradcam") for r in results]


def test_rows_filter_by_class_confidence_errors_and_text(screened):
    classifier, results = screened
    rows = records_of(results, classifier.classes)
    assert any(not r.ok for r in rows)
    errors = [r for r in rows if RowFilter(errors_only=True).accepts(r)]
    assert errors and all(not r.ok for r in errors) and "cut-short.jpg" in errors[0].error
    label = rows[0].label
    assert all(r.label == label for r in rows if RowFilter(label=label).accepts(r))
    confident = [r for r in rows if RowFilter(min_confidence=0.5).accepts(r)]
    assert all(r.confidence >= 0.5 for r in confident)
    assert [r.name for r in rows if RowFilter(text="CUT-SHORT").accepts(r)] == ["cut-short.jpg"]
    assert position(rows[0]) == "1/16"


def test_series_summary_names_the_most_suspicious_slice(screened):
    classifier, results = screened
    rows = records_of(results, classifier.classes)
    (entry,) = series_summary(rows, classifier.classes)
    best = max((r for r in rows if r.series_uid), key=lambda r: r.tumour_probability)
    assert entry.slices == 16 and entry.most_suspicious is best
    assert most_suspicious_keys([entry]) == {frame_key(best.path, best.frame)}


def test_exported_csv_holds_the_notice_and_every_row(screened, tmp_path):
    classifier, results = screened
    path, series_path = export_results(tmp_path / "out.csv", records_of(results, classifier.classes), classifier.classes)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert RESEARCH_USE_NOTICE in lines[0] and lines[0].startswith("#")
    rows = list(csv.DictReader(lines[1:]))
    assert len(rows) == len(results)
    assert {r["status"] for r in rows} == {"ok", "error"}
    assert RESEARCH_USE_NOTICE in series_path.read_text(encoding="utf-8").splitlines()[0]


def test_exported_picture_has_the_overlay_and_a_caption(screened):
    classifier, results = screened
    result: FrameResult = next(r for r in results if r.ok)
    picture = result.frame.picture
    heat = np.ones(picture.shape[:2], np.float32)
    settings = OverlaySettings(opacity=0.5, threshold=0.0)
    text = export_caption(result.label, result.confidence, settings, classifier.classes, 0)
    assert RESEARCH_USE_NOTICE in text and not math.isnan(result.confidence)
    out = compose_export(picture, heat, settings, text)
    factor = out.shape[1] // picture.shape[1]
    assert factor >= 2 and out.shape[1] >= 512 and out.shape[0] > picture.shape[0] * factor  # caption strips below
    assert not np.array_equal(out[: picture.shape[0] * factor : factor, ::factor], picture)  # the heat is drawn


def test_a_file_opened_under_two_spellings_is_one_frame(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "a.jpg")
    monkeypatch.chdir(tmp_path)
    session = ViewerSession()
    session.add([FrameRef(tmp_path / "a.jpg"), FrameRef(Path("link.jpg"))])
    session.add([FrameRef(Path("a.jpg"))])
    assert len(session) == 1 and sum(len(g) for g in session.groups) == 1
    assert session.current_key == frame_key(tmp_path / "a.jpg", 0)
