"""The window's status bar: messages and the last error, progress with its Cancel button, the model in
use, the unverified-model warning and the permanent research-use notice."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QSizePolicy, QStatusBar, QWidget

from brainscan import RESEARCH_USE_NOTICE
from brainscan.gui.icons import icon

log = logging.getLogger(__name__)

ERROR_MS = 20_000


class ElidedLabel(QLabel):
    """A one-line label that elides its text in the middle to the width it is given; the full text is its
    tooltip (a long message never runs under the permanent widgets to its right)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(0)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        self._full = " ".join(text.split("\n"))
        self.setToolTip(self._full)
        self._elide()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        room = max(0, self.contentsRect().width())
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, room))


class StatusLine:
    """Builds the permanent widgets of ``bar`` and says things in it.

    Attributes
    ----------
    progress, cancel_button:
        Shown while a batch or a report runs (the button is wired by the window).
    device_label, integrity_label:
        The model in use and, for an unverified model, the red warning (set by the model presenter).
    message_label:
        The message on the left, elided to the room left by the permanent widgets (full text as tooltip).
    last_error:
        The last message of :meth:`error` (tests and the self-test read it).
    """

    def __init__(self, bar: QStatusBar) -> None:
        self.bar = bar
        self.last_error = ""
        self.message_label = ElidedLabel()
        self.message_label.setObjectName("statusMessage")
        bar.addWidget(self.message_label, 1)
        self._expiry = QTimer(self.message_label)
        self._expiry.setSingleShot(True)
        self._expiry.timeout.connect(self.clear_message)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setToolTip("Stop the running classification (Esc)")
        self.cancel_button.hide()
        self.device_label = QLabel("No model")
        self.device_label.setObjectName("deviceLabel")
        self.integrity_label = QLabel("UNVERIFIED MODEL")
        self.integrity_label.setObjectName("integrityLabel")
        self.integrity_label.setStyleSheet(
            "QLabel { color: white; background: #b00020; padding: 1px 6px; font-weight: bold; }"
        )
        self.integrity_label.hide()
        notice = QLabel("Research use only")
        notice.setStyleSheet("QLabel { color: #1a1a1a; background: #ffc107; padding: 1px 6px; font-weight: bold; }")
        notice.setToolTip(RESEARCH_USE_NOTICE)
        for widget in (self.progress, self.cancel_button, self.device_label, self.integrity_label, notice):
            bar.addPermanentWidget(widget)

    def message(self, text: str, msecs: int = 0) -> None:
        """Show ``text`` (for ``msecs`` ms, or until the next message when 0)."""
        self._expiry.stop()
        self.message_label.set_full_text(text)
        if msecs > 0:
            self._expiry.start(msecs)

    def current_message(self) -> str:
        """The full text of the message shown (not elided)."""
        return self.message_label.full_text()

    def clear_message(self) -> None:
        self._expiry.stop()
        self.message_label.set_full_text("")

    def error(self, text: str) -> None:
        """Show ``text`` for a while, log it and keep it as :attr:`last_error`."""
        log.warning("%s", text)
        self.message(text, ERROR_MS)
        self.last_error = text

    def start_progress(self, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()

    def set_progress(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.progress.setRange(0, total)
        self.progress.setValue(done)

    def end_progress(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
