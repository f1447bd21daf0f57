"""The MPR window on the real shared sagittal series: three linked views, the wheel, the shared window, the
message for what is not a volume, and *Classify axial reformats*."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QAction, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication
from viewer_helpers import open_and_show

from brainscan.engine.input.volume import plane_point, voxel_at

pytestmark = pytest.mark.gui

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAGITTAL = SHARED / "dicom" / "sagittal-t1-brain"


@pytest.fixture
def sagittal_window(qtbot, window):
    if not SAGITTAL.is_dir():
        pytest.skip(f"the shared sagittal series is not at {SAGITTAL}")
    open_and_show(qtbot, window, [SAGITTAL])
    qtbot.waitUntil(lambda: len(window.controller.session) == 16, timeout=10_000)
    return window


@pytest.fixture
def mpr(qtbot, sagittal_window):
    """The MPR window of the sagittal series, its volume on screen."""
    actions = sagittal_window.mpr
    with qtbot.waitSignal(actions.open_mpr.triggered, timeout=1000):
        actions.open_mpr.trigger()
    mpr = actions.mpr
    assert mpr is not None and mpr.isVisible() and mpr.loading
    qtbot.waitUntil(lambda: mpr.model is not None, timeout=20_000)
    return mpr


def _click(view, row: int, col: int) -> None:
    """A left click at the centre of picture pixel (row, col) of a plane view."""
    point = view.view_point(row, col)
    viewport = view.viewport()
    for kind, buttons in ((QEvent.Type.MouseButtonPress, Qt.MouseButton.LeftButton),
                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), Qt.MouseButton.LeftButton,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)


def _wheel(view, notches: int) -> None:
    viewport = view.viewport()
    center = QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(center, QPointF(viewport.mapToGlobal(center.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def test_the_mpr_action_has_a_shortcut_and_a_tooltip_and_sits_in_the_view_menu(window):
    actions = window.mpr
    assert actions.open_mpr.shortcut().toString() == "Ctrl+M"
    assert "Ctrl+M" in actions.open_mpr.toolTip() and "crosshair" in actions.open_mpr.toolTip()
    assert actions.open_mpr in window.actions_.view_menu.actions()
    assert actions.classify_reformats.shortcut().toString() == "Shift+F5"
    assert "Shift+F5" in actions.classify_reformats.toolTip()
    analysis = next(a.menu() for a in window.menuBar().actions() if a.menu() and window.actions_.classify in a.menu().actions())
    assert actions.classify_reformats in analysis.actions()
    assert not actions.classify_reformats.isEnabled()  # nothing open yet
    shortcuts = [a.shortcut().toString() for a in window.findChildren(QAction) if not a.shortcut().isEmpty()]
    assert shortcuts.count("Ctrl+M") == 1 and shortcuts.count("Shift+F5") == 1  # no other action takes them


def test_three_views_of_the_volume_with_square_pixels_titles_and_letters(qtbot, mpr):
    views = mpr.views
    assert views["sagittal"].image_item.image.shape == (256, 256)
    assert views["axial"].image_item.image.shape == (256, 16)
    assert views["coronal"].image_item.image.shape == (256, 16)
    # the rectangles are in millimetres: 16 slices 0.9 mm apart, 256 pixels 0.859375 mm apart
    axial = views["axial"].image_item.mapRectToParent(views["axial"].image_item.boundingRect())
    assert axial.width() == pytest.approx(16 * 0.9, rel=0.01) and axial.height() == pytest.approx(256 * 0.859375)
    sagittal = views["sagittal"].image_item.mapRectToParent(views["sagittal"].image_item.boundingRect())
    assert sagittal.width() == pytest.approx(sagittal.height())
    model = mpr.model
    assert mpr.classify_button.defaultAction() is mpr.main.mpr.classify_reformats and mpr.classify_button.isEnabled()
    assert views["axial"].title_label.text() == f"Axial {model.value.axial + 1}/256"
    assert views["sagittal"].title_label.text() == f"Sagittal {model.value.sagittal + 1}/16"
    assert views["axial"].letters["top"].text().startswith("A") and views["axial"].letters["right"].text().startswith("L")
    assert views["sagittal"].letters["left"].text().startswith("A")
    assert views["coronal"].letters["top"].text().startswith("H")
    # the slice shown is the volume's, with the series' window (the main view's) as levels
    assert (views["sagittal"].image_item.image == model.slice_of("sagittal").values).all()
    window = mpr.main.controller.window
    assert tuple(views["axial"].image_item.levels) == pytest.approx((window.lower, window.upper))


def test_a_click_in_the_sagittal_view_moves_the_axial_and_coronal_slices(qtbot, mpr):
    model, volume = mpr.model, mpr.model.volume
    sagittal = model.value.sagittal
    _click(mpr.views["sagittal"], 60, 200)
    voxel = voxel_at(volume, "sagittal", sagittal, 60, 200)
    assert model.value.voxel == voxel
    assert model.value.axial == plane_point(volume, "axial", voxel)[0] == 195
    assert model.value.coronal == 200 and model.value.sagittal == sagittal
    assert mpr.views["axial"].title_label.text() == "Axial 196/256"
    assert (mpr.views["axial"].image_item.image == model.slice_of("axial").values).all()
    view = mpr.views["sagittal"]
    assert view.vline.value() == pytest.approx(200.5 * 0.859375) and view.hline.value() == pytest.approx(60.5 * 0.859375)
    _row, col = model.crosshair("axial")
    assert mpr.views["axial"].vline.value() == pytest.approx((col + 0.5) * mpr.views["axial"].spacing[1])
    _click(mpr.views["axial"], 30, 2)  # and back: a click in the axial view moves the sagittal slice
    assert model.value.axial == 195 and model.crosshair("axial") == (30, 2)
    assert model.value.sagittal == plane_point(volume, "sagittal", model.value.voxel)[0] != sagittal


def test_a_left_drag_carries_the_crosshair_along(qtbot, mpr):
    view, model = mpr.views["coronal"], mpr.model
    coronal = model.value.coronal
    viewport = view.viewport()
    start, end = view.view_point(100, 4), view.view_point(180, 12)
    for kind, point, buttons in ((QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton),
                                 (QEvent.Type.MouseMove, (start + end) / 2, Qt.MouseButton.LeftButton),
                                 (QEvent.Type.MouseMove, end, Qt.MouseButton.LeftButton),
                                 (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), Qt.MouseButton.LeftButton,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)
    assert model.crosshair("coronal") == (180, 12) and model.value.coronal == coronal
    assert model.value.axial == plane_point(model.volume, "axial", model.value.voxel)[0]


def test_the_wheel_steps_the_slice_of_the_view_under_the_cursor(qtbot, mpr):
    model = mpr.model
    start = model.value
    _wheel(mpr.views["sagittal"], -3)  # towards the user: forwards
    assert model.value.sagittal == start.sagittal + 3
    assert (model.value.axial, model.value.coronal) == (start.axial, start.coronal)
    _wheel(mpr.views["axial"], 2)
    assert model.value.axial == start.axial - 2
    assert mpr.views["axial"].title_label.text() == f"Axial {start.axial - 1}/256"


def test_the_window_is_shared_with_the_main_view(qtbot, mpr):
    from brainscan.engine.viewer.display import WindowLevel

    main = mpr.main
    main.controller.set_window(WindowLevel(400.0, 200.0, "manual"))
    assert mpr.model.window == WindowLevel(400.0, 200.0, "manual")
    assert tuple(mpr.views["coronal"].image_item.levels) == pytest.approx((300.0, 500.0))
    mpr.model.window = WindowLevel(100.0, 50.0, "manual")  # a right-drag in the MPR sets the main view's too
    assert main.controller.window == WindowLevel(100.0, 50.0, "manual")
    assert tuple(main.view.slice_item.levels) == pytest.approx((75.0, 125.0))


def test_a_right_drag_in_a_view_widens_the_window_of_all_views_and_the_main_view(qtbot, mpr):
    view = mpr.views["sagittal"]
    before = mpr.model.window
    viewport = view.viewport()
    start = QPoint(viewport.width() // 2, viewport.height() // 2)
    end = start + QPoint(80, 0)
    for kind, point, buttons in ((QEvent.Type.MouseButtonPress, start, Qt.MouseButton.RightButton),
                                 (QEvent.Type.MouseMove, (start + end) / 2, Qt.MouseButton.RightButton),
                                 (QEvent.Type.MouseMove, end, Qt.MouseButton.RightButton),
                                 (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), Qt.MouseButton.RightButton,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)
    after = mpr.model.window
    assert after.width > before.width and after.center == pytest.approx(before.center) and after.source == "manual"
    for plane in ("axial", "coronal", "sagittal"):
        assert tuple(mpr.views[plane].image_item.levels) == pytest.approx((after.lower, after.upper))
    assert mpr.main.controller.window == after
    assert mpr.model.value.voxel == (8, 128, 128)  # a right-drag never moves the crosshair


def test_a_single_picture_gets_a_message_not_a_crash(qtbot, window):
    kaggle = SHARED / "brain-tumor-mri" / "Training" / "glioma"
    if not kaggle.is_dir():
        pytest.skip("the Kaggle pictures are not there")
    open_and_show(qtbot, window, [sorted(kaggle.iterdir())[0]])
    mpr = window.mpr.show_mpr()
    assert mpr.model is None and not mpr.loading
    assert "single pictures, not a 3-D series" in mpr.message.text() and mpr.message.isVisible()
    assert not window.mpr.classify_reformats.isEnabled()


def test_a_two_slice_series_gets_a_message(qtbot, window):
    if not SAGITTAL.is_dir():
        pytest.skip("the shared series is not there")
    open_and_show(qtbot, window, sorted(SAGITTAL.iterdir())[:2])
    qtbot.waitUntil(lambda: len(window.controller.session) == 2, timeout=10_000)
    mpr = window.mpr.show_mpr()
    assert mpr.model is None and "has 2 slices" in mpr.message.text()


def test_a_series_with_a_missing_slice_gets_the_volume_s_message(qtbot, window, tmp_path):
    if not SAGITTAL.is_dir():
        pytest.skip("the shared series is not there")
    import shutil

    files = sorted(SAGITTAL.iterdir())
    for file in files[:6] + files[7:10]:  # the 7th slice is missing: not a regular grid
        shutil.copy(file, tmp_path / file.name)
    open_and_show(qtbot, window, [tmp_path])
    qtbot.waitUntil(lambda: len(window.controller.session) == 9, timeout=10_000)
    mpr = window.mpr.show_mpr()
    with qtbot.waitSignal(mpr.failed, timeout=20_000) as blocker:
        pass
    assert "cannot be shown in MPR" in blocker.args[0] and "missing" in blocker.args[0]
    assert mpr.model is None and mpr.message.isVisible()


def test_closing_the_main_window_stops_the_volume_and_closes_the_mpr(qtbot, sagittal_window):
    w = sagittal_window
    mpr = w.mpr.show_mpr()
    assert mpr.loading
    w.close()  # the window fixture then checks that no worker thread outlived the window
    assert w.pool.pool.activeThreadCount() == 0
    assert not mpr.isVisible()


def test_classify_axial_reformats_opens_them_as_a_series_and_classifies_every_slice(qtbot, sagittal_window):
    from brainscan.engine.input.planes import REFORMAT_BASE, frame_plane

    w = sagittal_window
    action = w.mpr.classify_reformats
    assert action.isEnabled()
    acquired = w.controller.session.current_group
    with qtbot.waitSignal(w.batch.finished, timeout=120_000) as finished:
        action.trigger()
    assert finished.args == [False]
    session = w.controller.session
    assert len(session.groups) == 2 and len(session) == 16 + 256
    reformats = session.groups[1]
    assert reformats.name == f"{acquired.name} · axial reformats"
    assert reformats.title == f"{acquired.name} · axial reformats (256)"
    assert w.browser.browser_model.item(1).text().startswith(f"{acquired.name} · axial reformats")
    assert all(ref.kind == "reformat" and frame_plane(ref.frame) == ("axial", i) for i, ref in enumerate(reformats.refs))
    assert reformats.refs[0].frame == REFORMAT_BASE and reformats.refs[0].series_uid != acquired.refs[0].series_uid
    # one result per reformatted slice, none for the acquired slices (only the reformats were classified)
    keys = [session.key_of(ref) for ref in reformats.refs]
    assert all(key in session.results for key in keys) and len(session.results) == 256
    records = [session.results[key] for key in keys]
    assert sum(record.ok for record in records) == 256, [r.error for r in records if not r.ok][:3]
    assert {record.series_uid for record in records} == {reformats.refs[0].series_uid}
    assert w.results_panel.table_model.rowCount() == 256
    # the series summary has the reformats' own row with its verdict, named for people
    summary = w.series_panel
    assert summary.rowCount() == 1
    assert summary.item(0, 0).text() == reformats.name and summary.item(0, 2).text() == "256"
    assert summary.item(0, 1).text() != ""
    # a reformatted slice shows, with its heat map from the kept features
    with qtbot.waitSignal(w.controller.frameShown, timeout=10_000):
        w.controller.go_to(keys[128])
    frame = w.controller.current_frame
    assert frame.values.shape == (256, 16) and "axial reformat" in frame.tags["Plane"]
    assert w.controller.current_prediction() is not None and w.controller.current_heat() is not None
    assert not action.isEnabled() or w.controller.session.current_group is reformats


def test_a_nifti_volume_opens_in_mpr_like_the_series(qtbot, window, tmp_path):
    pytest.importorskip("nibabel")
    if not SAGITTAL.is_dir():
        pytest.skip("the shared series is not there")
    from nifti_volumes import sagittal_volume, write_nifti

    volume = sagittal_volume(SAGITTAL)
    path = write_nifti(tmp_path / "sagittal.nii.gz", volume)
    open_and_show(qtbot, window, [path])
    mpr = window.mpr.show_mpr()
    qtbot.waitUntil(lambda: mpr.model is not None, timeout=20_000)
    views = mpr.views
    assert views["sagittal"].image_item.image.shape == (256, 256)
    assert views["axial"].image_item.image.shape == (256, 16)
    assert (views["sagittal"].image_item.image == mpr.model.slice_of("sagittal").values).all()
    assert mpr.model.volume.voxels == pytest.approx(np.rint(volume.voxels))
    assert views["axial"].letters["top"].text().startswith("A")
    _click(views["sagittal"], 60, 200)
    assert mpr.model.value.axial == 195 and mpr.model.value.coronal == 200


def test_keys_step_the_view_with_the_focus_and_the_mpr_follows_the_series_on_screen(qtbot, mpr):
    model = mpr.model
    coronal = model.value.coronal
    qtbot.keyClick(mpr.views["coronal"], Qt.Key.Key_Down)
    qtbot.keyClick(mpr.views["coronal"], Qt.Key.Key_Down)
    assert model.value.coronal == coronal + 2
    qtbot.keyClick(mpr.views["coronal"], Qt.Key.Key_PageUp)
    assert model.value.coronal == coronal + 1
    main = mpr.main
    main.controller.step(3)  # another slice of the same series: the volume stays
    assert mpr.model is model
    kaggle = SHARED / "brain-tumor-mri" / "Training" / "glioma"
    if kaggle.is_dir():
        main.opening.open_paths([str(sorted(kaggle.iterdir())[0])])
        qtbot.waitUntil(lambda: len(main.controller.session.groups) == 2, timeout=10_000)
        main.controller.step_group(1)  # a picture on screen: the MPR says why it shows nothing
        assert mpr.model is None and "single pictures" in mpr.message.text()


def test_reformats_of_a_series_with_a_missing_slice_are_refused_with_the_reason(qtbot, window, tmp_path):
    if not SAGITTAL.is_dir():
        pytest.skip("the shared series is not there")
    import shutil

    files = sorted(SAGITTAL.iterdir())
    for file in files[:6] + files[7:10]:
        shutil.copy(file, tmp_path / file.name)
    open_and_show(qtbot, window, [tmp_path])
    qtbot.waitUntil(lambda: len(window.controller.session) == 9, timeout=10_000)
    with qtbot.waitSignal(window.mpr.reformatsDone, timeout=20_000):
        assert window.mpr.classify_axial_reformats()
    assert len(window.controller.session.groups) == 1 and not window.batch.running
    assert "No axial reformats" in window.status.last_error and "missing" in window.status.last_error
