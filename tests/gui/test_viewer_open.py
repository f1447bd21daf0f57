"""Opening images in the viewer: a DICOM series, a folder of JPGs, drag and drop, broken files."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from viewer_helpers import open_and_show

from brainscan.gui.settings import AppSettings

pytestmark = pytest.mark.gui


def test_a_dicom_series_opens_in_slice_order_with_its_tags(qtbot, window, gui_data):
    series = gui_data.series
    open_and_show(qtbot, window, [series.folder])
    c = window.controller
    (group,) = c.session.groups
    assert group.kind == "series" and [r.path for r in group.refs] == series.files_in_order
    assert c.session.position_text() == "slice 1/16"
    assert window.view.position_label.text() == "slice 1/16"
    image = window.view.slice_item.image
    assert image.shape == (224, 224) and image.dtype.name == "float32"  # modality values, not the 8-bit picture
    assert window.tags_panel.value("Modality") == "MR"
    assert window.tags_panel.value("Position") == "slice 1/16"
    assert window.tags_panel.value("PatientName") is None  # identifiers are never shown
    browser = window.browser.browser_model
    assert browser.rowCount() == 1 and browser.item(0).rowCount() == 16


def test_the_rest_of_a_series_loads_in_the_background_for_thumbnails(qtbot, window, gui_data):
    loaded = []
    window.controller.thumbnailReady.connect(lambda key, _picture: loaded.append(key))
    open_and_show(qtbot, window, [gui_data.series.folder])
    qtbot.waitUntil(lambda: len(set(loaded)) == 16, timeout=10_000)
    item = window.browser.browser_model.item(0).child(15)
    assert not item.icon().isNull()


def test_a_folder_of_jpgs_opens_and_is_remembered_as_recent(qtbot, window, gui_data, settings_file):
    open_and_show(qtbot, window, [gui_data.jpgs])
    session = window.controller.session
    assert len(session) == 8 and session.position_text() == "image 1/8"
    assert window.view.slice_item.image.ndim == 2  # grey JPGs are windowed on their grey levels
    assert window.tags_panel.value("Format").startswith("JPEG")
    window.settings.sync()
    assert AppSettings(settings_file).recent()[0] == str(gui_data.jpgs)
    assert str(settings_file) == window.settings.location  # never the user's real settings


def test_dropping_files_on_the_window_opens_them(qtbot, window, gui_data):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in sorted(gui_data.jpgs.glob("*.jpg"))[:3]])
    event = QDropEvent(QPoint(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.controller.frameShown, timeout=10_000):
        window.dropEvent(event)
    assert len(window.controller.session) == 3


def test_a_broken_file_shows_its_message_and_the_others_still_open(qtbot, window, gui_data):
    c = window.controller
    broken_key = (str(gui_data.broken / "cut-short.jpg"), 0)
    with qtbot.waitSignal(c.frameFailed, timeout=10_000, check_params_cb=lambda key, _m: key == broken_key):
        window.opening.open_paths([gui_data.broken])
    assert c.session.current_key == broken_key  # the first file of the folder
    message = window.view.message
    assert message.isVisible()
    assert "cut-short.jpg" in message.text() and "copy it again" in message.text()
    assert "cut-short.jpg" in window.status.current_message()
    item = window.browser.browser_model.item_of(broken_key)
    assert "cut-short.jpg" in item.toolTip()
    # the good file beside it still shows
    fine_key = (str(gui_data.broken / "fine.jpg"), 0)
    if c.frame_of(fine_key) is None:
        with qtbot.waitSignal(c.frameShown, timeout=10_000):
            c.go_to(fine_key)
    else:
        c.go_to(fine_key)
    assert not message.isVisible() and c.shown_key == fine_key


def test_a_missing_path_is_reported_not_raised(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.opening.finished, timeout=10_000):
        window.opening.open_paths([tmp_path / "nowhere"])
    assert "does not exist" in window.status.last_error
    assert len(window.controller.session) == 0


def test_close_all_empties_every_panel(qtbot, window, gui_data):
    open_and_show(qtbot, window, [gui_data.jpgs])
    window.actions_.close_all.trigger()
    assert len(window.controller.session) == 0
    assert window.browser.browser_model.rowCount() == 0
    assert window.view.message.isVisible()


def test_a_study_folder_with_a_licence_and_notes_opens_only_its_slices(qtbot, window, gui_data, tmp_path):
    import shutil

    study = tmp_path / "study"
    shutil.copytree(gui_data.series.folder, study / "series")
    (study / "LICENSE").write_text("MIT License\n")
    (study / "README.md").write_text("# a research series\n")
    open_and_show(qtbot, window, [study])
    assert len(window.controller.session) == 16
    assert "2 files skipped: not images (LICENSE, README.md)" in window.status.current_message()
