"""Issue 15, tried as a researcher would on real series: filters never move the slice on screen, the
settings dialog's model card reads, the Slice column holds its star, series and files are named for people,
report thumbnails honour the threshold, and the results table is usable at 1280 x 800."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from viewer_helpers import classify_and_wait, open_and_show

import dicom_factory as factory

pytestmark = pytest.mark.gui


@pytest.fixture
def classified(qtbot, window, gui_data):
    """The 16-slice series and the 8 Kaggle JPGs, opened and classified."""
    open_and_show(qtbot, window, [gui_data.series.folder, gui_data.jpgs])
    qtbot.waitUntil(lambda: len(window.controller.session) == 24, timeout=10_000)
    classify_and_wait(qtbot, window)
    return window


def _click_row(qtbot, panel, row: int) -> None:
    table = panel.table
    rect = table.visualRect(panel.proxy.index(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_a_filter_change_never_moves_the_slice_on_screen(qtbot, classified):
    w = classified
    panel, session = w.results_panel, w.controller.session
    series = [k for k in panel.table_model.keys if session.results[k].series_uid]
    target = min(series, key=lambda k: session.results[k].confidence)  # the least confident slice of the series
    w.controller.go_to(target)
    assert panel.selected_key() == target
    confidences = sorted(r.confidence for r in session.results.values())
    panel.min_confidence.setValue(round((session.results[target].confidence + confidences[-1]) / 2, 2))
    assert 0 < panel.proxy.rowCount() < 24  # the filter hides the slice on screen, not every row
    assert session.current_key == target
    assert panel.table.selectionModel().selectedRows() == [] and panel.selected_key() is None
    assert panel.shown_key_hidden() and "current slice hidden by the filter" in panel.count_label.text()
    panel.min_confidence.setValue(0.0)  # the slice on screen passes again: its row is selected again
    assert session.current_key == target and panel.selected_key() == target
    assert "hidden" not in panel.count_label.text()
    other = next(k for k in series if k != target)
    qtbot.keyClicks(panel.search, session.results[other].name)  # a search for another slice: no jump to it
    assert panel.proxy.rowCount() == 1
    assert session.current_key == target and panel.selected_key() is None
    _click_row(qtbot, panel, 0)  # selecting a row still navigates
    assert session.current_key == other and panel.selected_key() == other


@pytest.mark.parametrize("size", [(900, 650), (640, 480)])
def test_the_model_card_labels_read_on_one_line_and_the_values_take_the_width(qtbot, window, size):
    dialog = window.models.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.resize(*size)
    dialog.show()
    qtbot.waitExposed(dialog)
    card = dialog.card_view
    assert "tiny-test-model" in card.toPlainText() and card.labels
    line = card.labels[0].fontMetrics().height()
    for label, value in zip(card.labels, card.values, strict=True):
        assert label.height() < 2 * line, f"{label.text()} wraps"
        assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()[3:-4]) * 0.9
        assert value.width() > label.width() or label.text() == "<b>Test time augmentation</b>"
        assert value.geometry().right() <= card.viewport().width()  # no value runs off the card


@pytest.fixture
def desktop_font(qapp):
    """An 11 pt desktop font, as on the researcher's screen (offscreen Qt's default is 9 pt)."""
    before = qapp.font()
    font = QFont(before)
    font.setPointSize(11)
    qapp.setFont(font)
    yield
    qapp.setFont(before)


def test_the_slice_column_holds_the_star_of_the_most_suspicious_slice(qtbot, desktop_font, window, tmp_path):
    series = factory.write_sagittal_series(tmp_path / "long", factory.kaggle_images(120, "glioma", start=0, step=3))
    open_and_show(qtbot, window, [series.folder])
    qtbot.waitUntil(lambda: len(window.controller.session) == 120, timeout=20_000)
    classify_and_wait(qtbot, window, timeout=120_000)
    panel = window.results_panel
    model = panel.table_model
    starred = [row for row, key in enumerate(model.keys) if key in model.suspicious]
    assert len(starred) == 1
    index = model.index(starred[0], 1)
    text = index.data()
    assert text.endswith("★") and "/120" in text
    font = index.data(Qt.ItemDataRole.FontRole)
    needed = QFontMetrics(font).horizontalAdvance(text)
    assert panel.table.horizontalHeader().sectionSize(1) >= needed + 8, "the star is cut off"


def test_series_are_named_by_number_and_description_and_long_file_names_elide_in_the_middle(qtbot, classified):
    w = classified
    series = w.browser.browser_model.item(0)
    assert series.text() == "3 · t1_mprage_sag (synthetic wrapping of a real slice) (16)"
    summary = w.series_panel
    assert summary.rowCount() == 1 and summary.item(0, 0).text().startswith("3 · t1_mprage_sag")
    assert w.controller.session.groups[0].refs[0].series_uid in summary.item(0, 0).toolTip()
    assert w.browser.textElideMode() == Qt.TextElideMode.ElideMiddle
    child = series.child(0)
    assert child.toolTip().startswith(str(w.controller.session.groups[0].refs[0].path))


def test_a_series_without_description_or_number_keeps_its_folder_and_uid_name(gui_data, tmp_path):
    import shutil

    import pydicom

    from brainscan.engine.input.discovery import discover
    from brainscan.engine.viewer.state import group_refs

    folder = tmp_path / "anonymous"
    shutil.copytree(gui_data.series.folder, folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.SeriesDescription, ds.SeriesNumber
        ds.save_as(path)
    (group,) = group_refs(discover([folder]))
    assert group.title == f"anonymous · series …{group.refs[0].series_uid[-8:]} (16)"


def test_report_thumbnails_honour_the_threshold_of_the_heat_map_panel(qtbot, window, gui_data, tmp_path):
    import cv2
    import numpy as np

    from brainscan.engine.reports.thumbnails import shrink, thumbnail_name
    from brainscan.gui.report_dialog import ReportRequest

    open_and_show(qtbot, window, [gui_data.series.folder])
    window.overlay.threshold = 0.95  # only the hottest spots coloured
    series = window.reports.scopes()["series"]
    with qtbot.waitSignal(window.reports.finished, timeout=60_000):
        assert window.reports.write(ReportRequest("series", tuple(series), ("html",), tmp_path / "report"))
    folder = tmp_path / "report" / "thumbnails"
    assert len(list(folder.glob("*.png"))) == 16
    untouched = []
    for ref in series:
        drawn = cv2.imread(str(folder / thumbnail_name(ref.path, ref.frame)))[..., ::-1]
        frame = window.controller.frame_of((str(ref.path), ref.frame))
        plain = shrink(frame.picture) if frame is not None else None
        if plain is not None and plain.shape == drawn.shape:
            untouched.append(float(np.mean(np.all(drawn == plain, axis=-1))))
    assert untouched, "no frame to compare with"
    assert min(untouched) > 0.5, "most of each thumbnail shows the plain picture at threshold 0.95"


def test_after_sorting_the_table_scrolls_to_the_selected_row(qtbot, classified):
    w = classified
    panel, table = w.results_panel, w.results_panel.table
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    w.controller.go_to(panel.visible_keys()[0])  # the first row, in view at the top
    key = panel.selected_key()
    assert table.verticalScrollBar().maximum() > 0, "the table shows every row: nothing to scroll"
    table.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # it moves to the bottom: the view follows
    assert panel.selected_key() == key and w.controller.session.current_key == key
    rect = table.visualRect(table.selectionModel().currentIndex())
    assert table.viewport().rect().contains(rect.center()), "the selected row is out of sight after sorting"


def test_the_results_table_shows_at_least_eight_rows_at_1280_by_800(qtbot, desktop_font, classified):
    w = classified
    w.resize(1280, 800)
    qtbot.waitExposed(w)
    qtbot.wait(50)
    table = w.results_panel.table
    viewport = table.viewport().rect()
    shown = [row for row in range(w.results_panel.proxy.rowCount())
             if viewport.contains(table.visualRect(w.results_panel.proxy.index(row, 0)))]
    assert len(shown) >= 8, f"only {len(shown)} rows of the results table in view"
    assert w.view.height() >= 250, "the image area is no longer usable"


def test_a_long_status_message_is_elided_with_the_full_text_as_tooltip(qtbot, window):
    status = window.status
    status.device_label.setText("CPU · tiny-test-model (a long device description)")
    text = "Opening " + ", ".join(f"a-rather-long-file-name-{i}.dcm" for i in range(40)) + " — the end"
    status.message(text)
    qtbot.wait(50)
    label = status.message_label
    assert status.current_message() == text and label.toolTip() == text
    assert label.text() != text and "…" in label.text()
    assert label.text().startswith("Opening") and label.text().endswith("the end")  # elided in the middle
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()
    assert label.geometry().right() < status.device_label.geometry().left(), "the message runs under the device"
    status.message("Short.")
    assert label.text() == "Short." and status.current_message() == "Short."


def test_the_welcome_text_is_informational_and_only_a_failure_is_red(qtbot, window, gui_data):
    message = window.view.message
    assert message.isVisible() and "Open images" in message.text()
    assert message.property("kind") == "info"
    assert "60, 0, 0" not in message.styleSheet() and "#ffe0e0" not in message.styleSheet()
    broken = (str(gui_data.broken / "cut-short.jpg"), 0)
    with qtbot.waitSignal(window.controller.frameFailed, timeout=10_000, check_params_cb=lambda key, _m: key == broken):
        window.opening.open_paths([gui_data.broken])
    assert message.isVisible() and "cannot be shown" in message.text()
    assert message.property("kind") == "error"


def test_classes_show_by_display_name_and_filter_by_the_raw_name(qtbot, classified):
    w = classified
    panel, session = w.results_panel, w.controller.session
    texts = {panel.class_combo.itemText(i): panel.class_combo.itemData(i) for i in range(panel.class_combo.count())}
    assert texts["No tumour"] == "notumor" and texts["Glioma"] == "glioma" and "notumor" not in texts
    targets = [w.overlay_panel.target_combo.itemText(i) for i in range(w.overlay_panel.target_combo.count())]
    assert "No tumour" in targets and "notumor" not in targets
    shown = {panel.proxy.index(row, 3).data() for row in range(panel.proxy.rowCount())}
    raw = {r.label for r in session.results.values() if r.ok}
    assert shown == {display(label) for label in raw} and not shown & {"notumor", "glioma"}
    panel.class_combo.setCurrentIndex(panel.class_combo.findData("glioma"))
    expected = sum(1 for r in session.results.values() if r.ok and r.label == "glioma")
    assert panel.proxy.rowCount() == expected > 0
    summary = w.series_panel
    verdict = summary.item(0, 1)
    assert verdict.text() and verdict.text()[0].isupper() and "_" not in verdict.text()
    assert not verdict.toolTip().startswith(tuple(f"{c}:" for c in ("glioma", "meningioma", "notumor", "pituitary")))
    # the browser's items, the image's corner label and the tags panel say the display name too
    current = w.controller.current_result()
    assert current is not None and current.ok
    corner = w.view.finding_label.text()
    assert corner.startswith(display(current.label) + " ") and "Grad-CAM" in corner
    tags_text = " ".join(w.tags_panel.table.item(r, 1).text() for r in range(w.tags_panel.table.rowCount())
                         if w.tags_panel.table.item(r, 1) is not None)
    assert f"{display(current.label)} " in tags_text
    items = [w.browser.browser_model.item_of(key) for key in session.results]
    result_lines = [item.text().split("\n")[1] for item in items if "\n" in item.text()]
    assert result_lines and all(line.split(" ")[0] in {"Glioma", "Meningioma", "No", "Pituitary", "error"}
                                for line in result_lines)


def display(label: str) -> str:
    from brainscan.engine.results.names import display_name

    return display_name(label)
