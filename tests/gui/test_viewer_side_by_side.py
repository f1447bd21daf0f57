"""Side-by-side viewports (issue 15, feature 4) on the real shared series: layout, zoom/pan/slice sync, the two
modes (heat map vs plain, two series), the chooser, the view transform on both, and one view again at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from viewer_helpers import classify_and_wait, open_and_show

from brainscan.engine.resources import default_model_path
from brainscan.engine.results.names import display_name
from brainscan.engine.viewer.display import WindowLevel
from brainscan.engine.viewer.domain import out_of_domain

pytestmark = pytest.mark.gui

DICOM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom"
SPACING_MM = 0.9  # instance n of the MPRAGE lies at n * 0.9 mm along its normal


@pytest.fixture(scope="module")
def brain() -> Path:
    folder = DICOM / "sagittal-t1-brain"
    if not folder.is_dir():
        pytest.skip(f"the shared series {folder} is not on this machine")
    return folder


@pytest.fixture(scope="module")
def lateral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sagittal-t1-lateral`` (instances 1-8 of the same acquisition as ``brain``) as a series of its own: the
    files carry the brain's Series Instance UID, so opened as they are the viewer would join the two into one
    stack. Only the series' identity is changed (UID, number, description); pixels and geometry are the real ones."""
    import pydicom
    from pydicom.uid import generate_uid

    source = DICOM / "sagittal-t1-lateral"
    if not source.is_dir():
        pytest.skip(f"the shared series {source} is not on this machine")
    folder = tmp_path_factory.mktemp("lateral-series")
    uid = generate_uid()
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = 6
        ds.SeriesDescription = "SAG MPRAGE lateral"
        ds.save_as(folder / path.name)
    return folder


def _instance(key) -> int:
    return int(Path(key[0]).name[:4])


def _settled(qtbot, window) -> None:
    """Wait until both views show the frames they want."""
    c, sbs = window.controller, window.side_by_side
    qtbot.waitUntil(lambda: c.shown_key is not None and c.shown_key == c.session.current_key, timeout=10_000)
    if sbs.active:
        qtbot.waitUntil(lambda: not sbs.measuring, timeout=10_000)  # slice headers read on the thread pool
        qtbot.waitUntil(lambda: sbs.shown_key is not None and sbs.shown_key == sbs.wanted_key, timeout=10_000)


def _scale_and_centre(view) -> tuple[float, float, float]:
    pixel = view.viewbox.viewPixelSize()[0]
    centre = view.viewbox.viewRect().center()
    return pixel, centre.x(), centre.y()


def _choose(qtbot, window, text: str) -> bool:
    """Pick the item of the *Right view…* chooser whose text contains ``text`` and press OK; returns whether slice
    headers were still being read (off the GUI thread) when OK returned."""
    window.side_by_side.actions.choose.trigger()
    chooser = window.side_by_side.chooser
    assert chooser.isVisible() and chooser.combo.toolTip() and chooser.sync.toolTip()
    combo = chooser.combo
    index = next(i for i in range(combo.count()) if text in combo.itemText(i))
    combo.setCurrentIndex(index)
    chooser.accept()
    measuring = window.side_by_side.measuring
    _settled(qtbot, window)
    return measuring


@pytest.fixture
def two_series(qtbot, window, brain, lateral):
    open_and_show(qtbot, window, [brain])
    with qtbot.waitSignal(window.opening.finished, timeout=10_000):
        window.opening.open_paths([str(lateral)])
    assert len(window.controller.session.groups) == 2
    assert _choose(qtbot, window, "SAG MPRAGE lateral")  # the positions are read on the thread pool
    return window


def test_side_by_side_gives_two_usable_views_at_1280x800_and_is_remembered(qtbot, make_window, settings_file, brain):
    window = make_window()
    sbs, a = window.side_by_side, window.side_by_side.actions
    open_and_show(qtbot, window, [brain])
    assert not sbs.right.isVisible() and not a.toggle.isChecked()
    assert "(Ctrl+2)" in a.toggle.toolTip() and "(Ctrl+Shift+R)" in a.choose.toolTip()
    assert "(Ctrl+Shift+Y)" in a.sync.toolTip() and sbs.sync_button.text() == "Sync"
    shortcuts = [act.shortcut().toString() for act in window.findChildren(type(a.toggle)) if not act.shortcut().isEmpty()]
    for action in a.all:
        assert shortcuts.count(action.shortcut().toString()) == 1, f"{action.text()}: its shortcut is taken twice"
    a.toggle.trigger()
    _settled(qtbot, window)
    assert sbs.right.isVisible() and sbs.splitter.widget(0) is window.view and sbs.splitter.widget(1) is sbs.right
    qtbot.waitUntil(lambda: abs(window.view.width() - sbs.right.width()) <= 2)
    assert window.view.width() >= 300 and window.view.height() >= 300
    assert window.view.height() == sbs.right.height()
    button = sbs.sync_button  # the Sync toggle, over the right view's bottom-right corner
    assert button.isVisible() and button.isChecked() and sbs.right.rect().contains(button.geometry())
    assert sbs.shown_key == window.controller.shown_key  # heat map vs plain by default: the same frame
    window.close()
    again = make_window(path=settings_file)
    assert again.side_by_side.model.two_views and again.side_by_side.actions.toggle.isChecked()
    open_and_show(qtbot, again, [brain])
    _settled(qtbot, again)
    qtbot.waitUntil(lambda: abs(again.view.width() - again.side_by_side.right.width()) <= 2)
    assert again.side_by_side.right.width() >= 300


def test_zoom_and_pan_follow_both_ways_and_not_when_unsynchronised(qtbot, two_series):
    w = two_series
    left, right = w.view, w.side_by_side.right
    w.actions_.zoom_in.trigger()
    w.actions_.zoom_in.trigger()
    zoomed = _scale_and_centre(left)
    assert _scale_and_centre(right) == pytest.approx(zoomed, rel=1e-6, abs=1e-6)
    right.viewbox.translateBy(x=30.0, y=-12.0)  # pan the right view
    panned = _scale_and_centre(right)
    assert panned[1] == pytest.approx(zoomed[1] + 30.0) and panned[2] == pytest.approx(zoomed[2] - 12.0)
    assert _scale_and_centre(left) == pytest.approx(panned, rel=1e-6, abs=1e-6)
    right.zoom(2.0)  # Ctrl+wheel on the right
    assert _scale_and_centre(left)[0] == pytest.approx(panned[0] / 2, rel=1e-6)
    qtbot.mouseClick(w.side_by_side.sync_button, Qt.MouseButton.LeftButton)
    assert not w.side_by_side.model.sync and not w.side_by_side.actions.sync.isChecked()
    before = _scale_and_centre(right)
    w.actions_.zoom_out.trigger()
    assert _scale_and_centre(left)[0] != pytest.approx(before[0])
    assert _scale_and_centre(right) == pytest.approx(before)


def test_slices_follow_by_position_and_step_apart_when_unsynchronised(qtbot, two_series):
    w = two_series
    c, sbs = w.controller, w.side_by_side
    # the left shows instance 89; the lateral slice nearest it is instance 8, 81 slices away
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (89, 8)
    assert "6 · SAG MPRAGE lateral" in sbs.right.position_label.text()
    assert "slice 8/8 · nearest slice, 72.9 mm away" in sbs.right.position_label.text()
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    _settled(qtbot, w)
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (92, 8)
    assert "75.6 mm away" in sbs.right.position_label.text()
    # the window follows the left's (same modality), whatever the right slice's own tags say
    assert sbs.right.slice_item.levels == pytest.approx(c.display.levels(c.window))
    c.set_window(WindowLevel(400.0, 700.0))
    assert sbs.right.slice_item.levels == pytest.approx((50.0, 750.0))
    assert sbs.right.window_label.text().startswith("W 700 / L 400")
    # stepping the right view moves the left to the midline slice nearest its new slice
    qtbot.keyClick(sbs.right, Qt.Key.Key_Up)
    _settled(qtbot, w)
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (89, 7)
    assert "slice 7/8 · nearest slice, 73.8 mm away" in sbs.right.position_label.text()
    # unsynchronised: each steps on its own
    sbs.actions.sync.trigger()
    qtbot.keyClick(w.view, Qt.Key.Key_Down)
    _settled(qtbot, w)
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (90, 7)
    qtbot.keyClick(sbs.right, Qt.Key.Key_Home)
    _settled(qtbot, w)
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (90, 1)
    assert "nearest" not in sbs.right.position_label.text()
    # instance 1 carries degenerate window tags (11/22): the right still shows the left's window
    assert sbs.right.slice_item.levels == pytest.approx(c.display.levels(c.window))
    assert sbs.display.default.width < 30
    # synchronised again: the right goes back to the slice matching the left
    sbs.actions.sync.trigger()
    _settled(qtbot, w)
    assert (_instance(c.shown_key), _instance(sbs.shown_key)) == (90, 8)


def test_heat_map_vs_plain_shows_the_heat_map_on_the_left_only(qtbot, make_window, brain):
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    w = make_window(model=default_model_path())
    c, sbs = w.controller, w.side_by_side
    open_and_show(qtbot, w, [brain])
    qtbot.waitUntil(lambda: len(c.session) == 16, timeout=10_000)
    assert c.classifier is not None and c.classifier.contract.name != "tiny-test-model"  # the shipped model
    classify_and_wait(qtbot, w, timeout=120_000)
    assert len(c.session.results) == 16
    w.overlay.visible = True
    sbs.actions.toggle.trigger()
    _settled(qtbot, w)
    assert sbs.model.mode == "heat_vs_plain" and sbs.shown_key == c.shown_key
    assert w.view.heat_item.isVisible() and not sbs.right.heat_item.isVisible()
    assert np.array_equal(sbs.right.slice_item.image, w.view.slice_item.image)
    assert sbs.right.finding_label.text() == "plain (no heat map)"
    for _ in range(4):  # the wheel over either view steps both
        w.view.sliceStep.emit(1)
        _settled(qtbot, w)
        assert sbs.shown_key == c.shown_key and w.view.heat_item.isVisible() and not sbs.right.heat_item.isVisible()
    sbs.right.sliceStep.emit(-2)
    _settled(qtbot, w)
    assert c.session.position == 2 and sbs.shown_key == c.shown_key
    w.view_tools.actions.rate.setValue(60)  # cine moves both
    w.view_tools.play(True)
    qtbot.waitUntil(lambda: c.session.position >= 5, timeout=10_000)
    w.view_tools.play(False)
    _settled(qtbot, w)
    assert sbs.shown_key == c.shown_key and _instance(sbs.shown_key) == 89 + c.session.position
    # one series open: "two series" shows it again, with its own heat map, on the slice matched by position
    _choose(qtbot, w, "SAG MPRAGE")
    assert sbs.model.mode == "two_series" and sbs.shown_key == c.shown_key
    assert sbs.right.heat_item.isVisible()
    assert np.allclose(sbs.right.heat_item.image, w.view.heat_item.image)
    result = c.current_result()
    assert sbs.right.finding_label.text().endswith(f"{result.confidence:.0%}")
    w.actions_.show_heat.trigger()  # H hides the heat map on both
    assert not w.view.heat_item.isVisible() and not sbs.right.heat_item.isVisible()


def test_rotate_flip_and_invert_apply_to_both_views(qtbot, two_series):
    w = two_series
    left, right = w.view, w.side_by_side.right
    tools = w.view_tools.actions
    tools.rotate.trigger()
    tools.flip_h.trigger()
    tools.invert.trigger()
    assert right.slice_item.transform() == left.slice_item.transform() == right.heat_item.transform()
    assert not right.slice_item.transform().isIdentity()
    assert right.slice_item.lut is not None and np.array_equal(right.slice_item.lut, left.slice_item.lut)
    assert _scale_and_centre(right) == pytest.approx(_scale_and_centre(left), rel=1e-6, abs=1e-6)
    tools.reset_view.trigger()
    assert right.slice_item.transform().isIdentity() and right.slice_item.lut is None


def test_turning_the_layout_off_leaves_one_view_and_nothing_pending(qtbot, two_series):
    w = two_series
    sbs = w.side_by_side
    key = sbs.shown_key
    sbs.actions.toggle.trigger()
    assert not sbs.model.two_views and not sbs.right.isVisible() and w.view.isVisible()
    assert [sbs.splitter.widget(i).isVisible() for i in range(sbs.splitter.count())] == [True, False]
    assert sbs.right.slice_item.image is None and sbs.shown_key is None and sbs.wanted_key is None
    assert not w.loader.is_pending(key)
    w.view.sliceStep.emit(1)  # the left goes on alone
    _settled(qtbot, w)
    assert sbs.shown_key is None and sbs.right.slice_item.image is None
    qtbot.waitUntil(lambda: not any(w.loader.is_pending(k) for k in map(w.controller.session.key_of,
                                                                           w.controller.session.refs())),
                    timeout=20_000)


def test_another_series_shows_its_own_finding_heat_map_and_domain_badge(qtbot, make_window, brain, lateral):
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    w = make_window(model=default_model_path())
    c, sbs = w.controller, w.side_by_side
    open_and_show(qtbot, w, [brain])
    with qtbot.waitSignal(w.opening.finished, timeout=10_000):
        w.opening.open_paths([str(lateral)])
    qtbot.waitUntil(lambda: len(c.session) == 24, timeout=10_000)
    classify_and_wait(qtbot, w, timeout=120_000)
    w.overlay.visible = True
    _choose(qtbot, w, "SAG MPRAGE lateral")
    assert _instance(sbs.shown_key) == 8 and sbs.right.heat_item.isVisible()
    record = c.session.results[sbs.shown_key]
    assert sbs.right.finding_label.text() == f"{display_name(record.label)} {record.confidence:.0%}"
    # the edge of the head, mostly air: the domain guard calls it out of domain, and the right view says so
    assert out_of_domain(record)
    assert sbs.right.domain_badge.isVisible() and sbs.right.domain_badge.text().startswith("OUT OF DOMAIN")
    assert not w.view.domain_badge.isVisible()  # the midline slice on the left is in domain
    assert not np.allclose(sbs.right.heat_item.image, w.view.heat_item.image)


def test_two_series_takes_a_series_opened_later(qtbot, window, brain, lateral):
    c, sbs = window.controller, window.side_by_side
    open_and_show(qtbot, window, [brain])
    sbs.model.update(layout="side_by_side", mode="two_series")
    _settled(qtbot, window)
    assert sbs.group_key == c.session.current_group.key and sbs.shown_key == c.shown_key  # alone: itself
    with qtbot.waitSignal(window.opening.finished, timeout=10_000):
        window.opening.open_paths([str(lateral)])
    _settled(qtbot, window)
    assert sbs.group_key == c.session.groups[1].key and _instance(sbs.shown_key) == 8
    window.close_all()
    assert sbs.shown_key is None and sbs.right.slice_item.image is None and sbs.right.message.isVisible()
