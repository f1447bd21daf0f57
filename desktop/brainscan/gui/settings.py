"""What the viewer remembers between runs, in :class:`QSettings`.

The application uses the platform's native store under organisation ``brainscan``; tests, the
bench and the screenshot pass an INI file of their own (``AppSettings(path)``, or
``--settings FILE`` / ``$BRAINSCAN_SETTINGS``), so they never touch a person's real settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from brainscan.engine.model.inference import DEVICES
from brainscan.engine.resources import default_model_path
from brainscan.engine.viewer.overlay import OverlayModel, OverlaySettings
from brainscan.engine.viewer.side_by_side import SideBySide

ORGANISATION = "brainscan"
APPLICATION = "brainscan-viewer"
SETTINGS_ENV = "BRAINSCAN_SETTINGS"
MAX_RECENT = 10


class AppSettings:
    """Typed access to the viewer's settings.

    Parameters
    ----------
    path:
        An INI file to use instead of the native store (created when missing).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        path = path or os.environ.get(SETTINGS_ENV) or None
        if path:
            self.qsettings = QSettings(os.fspath(path), QSettings.Format.IniFormat)
        else:
            self.qsettings = QSettings(ORGANISATION, APPLICATION)

    @property
    def location(self) -> str:
        return self.qsettings.fileName()

    def sync(self) -> None:
        self.qsettings.sync()

    # -- model and device ----------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        value = self.qsettings.value("model/path", "")
        return Path(str(value)) if value else default_model_path()

    @model_path.setter
    def model_path(self, path: str | Path) -> None:
        self.qsettings.setValue("model/path", os.fspath(path))

    @property
    def device(self) -> str:
        value = str(self.qsettings.value("model/device", "auto"))
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, device: str) -> None:
        self.qsettings.setValue("model/device", device)

    # -- recent items ----------------------------------------------------------------------------
    def recent(self) -> list[str]:
        value = self.qsettings.value("recent/paths", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in value or []]

    def add_recent(self, paths: list[str]) -> list[str]:
        items = [os.fspath(p) for p in paths] + [p for p in self.recent() if p not in set(map(os.fspath, paths))]
        items = items[:MAX_RECENT]
        self.qsettings.setValue("recent/paths", items)
        return items

    def clear_recent(self) -> None:
        self.qsettings.setValue("recent/paths", [])

    # -- overlay ---------------------------------------------------------------------------------
    def overlay(self) -> OverlaySettings:
        defaults = OverlaySettings()
        try:
            return OverlaySettings(
                visible=_bool(self.qsettings.value("overlay/visible", defaults.visible)),
                method=str(self.qsettings.value("overlay/method", defaults.method)),
                opacity=float(self.qsettings.value("overlay/opacity", defaults.opacity)),
                colormap=str(self.qsettings.value("overlay/colormap", defaults.colormap)),
                threshold=float(self.qsettings.value("overlay/threshold", defaults.threshold)),
            )
        except (TypeError, ValueError):  # a hand-edited or outdated file: start from the defaults
            return defaults

    def overlay_model(self) -> OverlayModel:
        """The remembered overlay settings as the viewer's one :class:`OverlayModel`; every change is written back."""
        model = OverlayModel(self.overlay())
        model.events.changed.connect(self.set_overlay)
        return model

    def set_overlay(self, overlay: OverlaySettings) -> None:
        self.qsettings.setValue("overlay/visible", overlay.visible)
        self.qsettings.setValue("overlay/method", overlay.method)
        self.qsettings.setValue("overlay/opacity", overlay.opacity)
        self.qsettings.setValue("overlay/colormap", overlay.colormap)
        self.qsettings.setValue("overlay/threshold", overlay.threshold)

    # -- side by side ------------------------------------------------------------------------------
    def side_by_side(self) -> SideBySide:
        """The remembered layout (one view or two), the right view's mode and the sync (not which series)."""
        defaults = SideBySide()
        try:
            return SideBySide(layout=str(self.qsettings.value("view/layout", defaults.layout)),
                              mode=str(self.qsettings.value("view/right_mode", defaults.mode)),
                              sync=_bool(self.qsettings.value("view/sync", defaults.sync)))
        except (TypeError, ValueError):  # a hand-edited or outdated file: start from the defaults
            return defaults

    def set_side_by_side(self, state: SideBySide) -> None:
        self.qsettings.setValue("view/layout", state.layout)
        self.qsettings.setValue("view/right_mode", state.mode)
        self.qsettings.setValue("view/sync", state.sync)

    # -- window layout -----------------------------------------------------------------------------
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def set_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    def last_folder(self) -> str:
        return str(self.qsettings.value("paths/last_folder", ""))

    def set_last_folder(self, folder: str | Path) -> None:
        self.qsettings.setValue("paths/last_folder", os.fspath(folder))


def _bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
