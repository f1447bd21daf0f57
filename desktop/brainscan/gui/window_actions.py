"""The main window's actions, menus and toolbar, in one place (shortcuts and tooltips included)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar, QToolButton

from brainscan.gui.icons import icon

if TYPE_CHECKING:
    from brainscan.gui.main_window import MainWindow


class WindowActions:
    """Creates the actions of ``window`` and puts them in its menus and toolbar."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        w = window
        self.open_files = self._action("&Open images…", "open-file", QKeySequence.StandardKey.Open, w.choose_files,
                                       "Open image or DICOM files")
        self.open_folder = self._action("Open &folder…", "open-folder", "Ctrl+Shift+O", w.choose_folder,
                                        "Open every image and DICOM file in a folder (recursively)")
        self.open_dicom = self._action("Open &DICOM folder…", "open-dicom", "Ctrl+D", w.choose_dicom_folder,
                                       "Open a folder of DICOM files; series are sorted along the slice normal")
        self.close_all = self._action("&Close all", None, "Ctrl+W", w.close_all, "Close every open image")
        self.export_image = self._action("Export &image with overlay…", "export-image", "Ctrl+E", w.choose_export_image,
                                         "Save the image on screen, as windowed, with its heat map and the notice (PNG)")
        self.export_results = self._action("Export &results…", "export-csv", "Ctrl+Shift+E", w.choose_export_results,
                                           "Save the results table and the per-series summary (CSV)")
        self.write_report = self._action("Write &report…", "report", "Ctrl+R", w.choose_write_report,
                                         "PDF, HTML and DICOM reports of the selection, a series or everything open")
        self.settings = self._action("&Settings…", "settings", QKeySequence.StandardKey.Preferences, w.open_settings,
                                     "Model file, model card and inference device")
        if self.settings.shortcut().isEmpty():
            self.settings.setShortcut(QKeySequence("Ctrl+,"))
        self.quit = self._action("&Quit", None, QKeySequence.StandardKey.Quit, w.close, "Quit the viewer")

        self.classify = self._action("&Classify all", "classify", "F5", w.classify_all,
                                     "Classify every open image not yet classified (in the background)")
        self.cancel = self._action("C&ancel", "cancel", "Esc", w.cancel_batch, "Stop the running classification")
        self.cancel.setEnabled(False)

        self.show_heat = self._action("Show &heat map", "heatmap", "H", None,
                                      "Overlay the class activation map (hold Space in the image to hide it briefly)")
        self.show_heat.setCheckable(True)
        self.show_heat.toggled.connect(w.set_heat_visible)
        self.fit = self._action("&Fit to window", "fit", "F", w.view.fit, "Show the whole image (double-click)")
        self.zoom_in = self._action("Zoom &in", "zoom-in", QKeySequence.StandardKey.ZoomIn, lambda: w.view.zoom(1.25),
                                    "Zoom in (Ctrl+wheel)")
        self.zoom_out = self._action("Zoom &out", "zoom-out", QKeySequence.StandardKey.ZoomOut, lambda: w.view.zoom(0.8),
                                     "Zoom out (Ctrl+wheel)")
        self.previous_slice = self._action("&Previous slice", None, "PgUp", lambda: w.controller.step(-1),
                                           "Previous slice or image (Up, Left, wheel up)")
        self.next_slice = self._action("&Next slice", None, "PgDown", lambda: w.controller.step(1),
                                       "Next slice or image (Down, Right, wheel down)")
        self.first_slice = self._action("First slice", None, None, lambda: w.controller.jump_to_end(False), "Home")
        self.last_slice = self._action("Last slice", None, None, lambda: w.controller.jump_to_end(True), "End")
        self.previous_series = self._action("Previous series", None, "Ctrl+PgUp", lambda: w.controller.step_group(-1),
                                            "First image of the previous series or folder")
        self.next_series = self._action("Next series", None, "Ctrl+PgDown", lambda: w.controller.step_group(1),
                                        "First image of the next series or folder")
        self.reset_window = self._action("&Reset window", "window-level", "R", w.controller.reset_window,
                                         "Back to the window the image was converted with (tags when sane, else auto)")
        self.shortcuts = self._action("&Keyboard and mouse…", None, QKeySequence.StandardKey.HelpContents,
                                      w.show_shortcuts, "Keyboard shortcuts and mouse gestures")
        self.about = self._action("&About brainscan", None, None, w.show_about, "Version, notice and licences")

        self.recent_menu = QMenu("Open &recent", w)
        self.recent_menu.aboutToShow.connect(w.fill_recent_menu)
        self.presets_menu = QMenu("Window &presets", w)
        self.presets_menu.setIcon(icon("window-level"))
        self.presets_menu.setToolTipsVisible(True)
        self.presets_menu.aboutToShow.connect(w.fill_presets_menu)
        self._menus()
        self._toolbar()

    def _action(self, text, icon_name, shortcut, slot, tip: str) -> QAction:
        action = QAction(text, self.window)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip} ({keys})" if keys else tip)
        action.setStatusTip(tip)
        if slot is not None:
            action.triggered.connect(lambda _checked=False, s=slot: s())
        self.window.addAction(action)
        return action

    def _menus(self) -> None:
        bar = self.window.menuBar()
        file_menu = bar.addMenu("&File")
        for item in (self.open_files, self.open_folder, self.open_dicom, self.recent_menu, None, self.close_all, None,
                     self.export_image, self.export_results, self.write_report, None, self.settings, None, self.quit):
            self._add(file_menu, item)
        view_menu = bar.addMenu("&View")
        for item in (self.show_heat, None, self.fit, self.zoom_in, self.zoom_out, None, self.previous_slice,
                     self.next_slice, self.first_slice, self.last_slice, self.previous_series, self.next_series):
            self._add(view_menu, item)
        self.view_menu = view_menu
        window_menu = bar.addMenu("&Window/level")
        window_menu.addMenu(self.presets_menu)
        window_menu.addAction(self.reset_window)
        analysis = bar.addMenu("&Analysis")
        analysis.addAction(self.classify)
        analysis.addAction(self.cancel)
        analysis.addSeparator()
        analysis.addAction(self.write_report)
        self.panels_menu = bar.addMenu("&Panels")
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.shortcuts)
        help_menu.addAction(self.about)

    @staticmethod
    def _add(menu: QMenu, item: QAction | QMenu | None) -> None:
        if item is None:
            menu.addSeparator()
        elif isinstance(item, QMenu):
            menu.addMenu(item)
        else:
            menu.addAction(item)

    def _toolbar(self) -> None:
        bar = QToolBar("Main", self.window)
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for item in (self.open_files, self.open_folder, self.open_dicom, None, self.classify, self.cancel, None,
                     self.show_heat, self.fit, self.zoom_in, self.zoom_out):
            if item is None:
                bar.addSeparator()
            else:
                bar.addAction(item)
        presets = QToolButton()
        presets.setMenu(self.presets_menu)
        presets.setDefaultAction(self.reset_window)
        presets.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        presets.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        presets.setText("Window")
        bar.addWidget(presets)
        bar.addSeparator()
        bar.addAction(self.export_image)
        bar.addAction(self.export_results)
        bar.addAction(self.write_report)
        bar.addAction(self.settings)
        for action in (self.zoom_in, self.zoom_out, self.fit, self.export_results, self.write_report, self.settings,
                       self.cancel):
            button = bar.widgetForAction(action)
            if isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.toolbar = bar
