"""The main window's actions, menus and toolbar, in one place (shortcuts and tooltips included).

What each action does is connected by the window (:meth:`WindowActions.connect`): this module knows
only Qt, so it imports nothing of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar, QToolButton

from brainscan.gui.icons import icon


def window_action(window: QMainWindow, text: str, shortcut: str | None, tip: str, icon_name: str | None = None) -> QAction:
    """An action of the window: its shortcut (window-wide), the tip with the keys as tooltip and status tip."""
    action = QAction(text, window)
    if icon_name:
        action.setIcon(icon(icon_name))
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    action.setToolTip(f"{tip} ({keys})" if keys else tip)
    action.setStatusTip(tip)
    window.addAction(action)
    return action

class WindowActions:
    """Creates the actions of ``window`` and puts them in its menus and toolbar."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self._file_actions()
        self._view_actions()
        self.recent_menu = QMenu("Open &recent", window)
        self.presets_menu = QMenu("Window &presets", window)
        self.presets_menu.setIcon(icon("window-level"))
        self.presets_menu.setToolTipsVisible(True)
        self._menus()
        self._toolbar()

    def _file_actions(self) -> None:
        self.open_files = self._action("&Open images…", "open-file", QKeySequence.StandardKey.Open,
                                       "Open image or DICOM files")
        self.open_folder = self._action("Open &folder…", "open-folder", "Ctrl+Shift+O",
                                        "Open every image and DICOM file in a folder (recursively)")
        self.open_dicom = self._action("Open &DICOM folder…", "open-dicom", "Ctrl+D",
                                       "Open a folder of DICOM files; series are sorted along the slice normal")
        self.close_all = self._action("&Close all", None, "Ctrl+W", "Close every open image")
        self.export_image = self._action("Export &image with overlay…", "export-image", "Ctrl+E",
                                         "Save the image on screen, as windowed, with its heat map and the notice (PNG)")
        self.export_results = self._action("Export &results…", "export-csv", "Ctrl+Shift+E",
                                           "Save the results table and the per-series summary (CSV)")
        self.write_report = self._action("Write &report…", "report", "Ctrl+R",
                                         "PDF, HTML and DICOM reports of the selection, a series or everything open")
        self.settings = self._action("&Settings…", "settings", QKeySequence.StandardKey.Preferences,
                                     "Model file, model card and inference device")
        if self.settings.shortcut().isEmpty():
            self.settings.setShortcut(QKeySequence("Ctrl+,"))
        self.quit = self._action("&Quit", None, QKeySequence.StandardKey.Quit, "Quit the viewer")
        self.quit.triggered.connect(lambda _checked=False: self.window.close())
        self.classify = self._action("&Classify all", "classify", "F5",
                                     "Classify every open image not yet classified (in the background)")
        self.cancel = self._action("C&ancel", "cancel", "Esc", "Stop the running classification")
        self.cancel.setEnabled(False)

    def _view_actions(self) -> None:
        self.show_heat = self._action("Show &heat map", "heatmap", "H",
                                      "Overlay the class activation map (hold Space in the image to hide it briefly)")
        self.show_heat.setCheckable(True)
        self.occlusion = self._action(
            "&Occlusion check", None, "Ctrl+Shift+H",
            "The occlusion map of this slice for the class shown: a 32 px black square hides each of 14 x 14 places "
            "in turn and the map is how much the class's logit drops. Slow (one network run per square: seconds on a "
            "CPU; Esc cancels) and model-agnostic: a check of the fast heat maps. Shown until another slice, method "
            "or class is chosen")
        self.occlusion.setEnabled(False)
        self.fit = self._action("&Fit to window", "fit", "F", "Show the whole image (double-click)")
        self.zoom_in = self._action("Zoom &in", "zoom-in", QKeySequence.StandardKey.ZoomIn, "Zoom in (Ctrl+wheel)")
        self.zoom_out = self._action("Zoom &out", "zoom-out", QKeySequence.StandardKey.ZoomOut, "Zoom out (Ctrl+wheel)")
        self.previous_slice = self._action("&Previous slice", None, "PgUp", "Previous slice or image (Up, Left, wheel up)")
        self.next_slice = self._action("&Next slice", None, "PgDown", "Next slice or image (Down, Right, wheel down)")
        self.first_slice = self._action("First slice", None, None, "Home")
        self.last_slice = self._action("Last slice", None, None, "End")
        self.previous_series = self._action("Previous series", None, "Ctrl+PgUp",
                                            "First image of the previous series or folder")
        self.next_series = self._action("Next series", None, "Ctrl+PgDown", "First image of the next series or folder")
        self.reset_window = self._action("&Reset window", "window-level", "R",
                                         "Back to the window the image was converted with (tags when sane, else auto)")
        self.shortcuts = self._action("&Keyboard and mouse…", None, QKeySequence.StandardKey.HelpContents,
                                      "Keyboard shortcuts and mouse gestures")
        self.about = self._action("&About brainscan", None, None, "Version, notice and licences")

    def connect(self, slots: Mapping[str, Callable[[], object]]) -> None:
        """Call ``slots[name]`` (no arguments) when the action called ``name`` is triggered."""
        for name, slot in slots.items():
            action: QAction = getattr(self, name)
            action.triggered.connect(lambda _checked=False, s=slot: s())

    def _action(self, text, icon_name, shortcut, tip: str) -> QAction:
        return window_action(self.window, text, shortcut, tip, icon_name)

    def _menus(self) -> None:
        bar = self.window.menuBar()
        file_menu = bar.addMenu("&File")
        self.file_menu = file_menu
        for item in (self.open_files, self.open_folder, self.open_dicom, self.recent_menu, None, self.close_all, None,
                     self.export_image, self.export_results, self.write_report, None, self.settings, None, self.quit):
            self._add(file_menu, item)
        view_menu = bar.addMenu("&View")
        for item in (self.show_heat, self.occlusion, None, self.fit, self.zoom_in, self.zoom_out, None, self.previous_slice,
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
