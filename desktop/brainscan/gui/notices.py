"""What the window says about itself: the research-use banner, the About box and the keyboard-and-mouse help."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from brainscan import RESEARCH_USE_NOTICE, __version__

BANNER_TEXT = (
    "RESEARCH USE ONLY — NOT FOR DIAGNOSIS. Classifications and heat maps are research outputs, "
    "not medical findings, and must not guide any clinical decision."
)
SHORTCUTS_HTML = """
<table cellspacing='6'>
<tr><td><b>Wheel</b>, Up/Down, Left/Right, PgUp/PgDn</td><td>previous / next slice</td></tr>
<tr><td>Home / End</td><td>first / last slice</td></tr>
<tr><td>Ctrl+PgUp / Ctrl+PgDn</td><td>previous / next series</td></tr>
<tr><td><b>Right- or middle-drag</b></td><td>window/level (horizontal: width, vertical: level)</td></tr>
<tr><td>R</td><td>reset the window; presets in the Window/level menu</td></tr>
<tr><td><b>Left-drag</b></td><td>pan</td></tr>
<tr><td>Ctrl+wheel, Ctrl++ / Ctrl+-</td><td>zoom</td></tr>
<tr><td>F, double-click</td><td>fit the image to the window</td></tr>
<tr><td>T / Shift+H / Shift+V / I</td><td>rotate 90° / flip horizontal / flip vertical / invert; Ctrl+0 resets the view</td></tr>
<tr><td>P</td><td>cine play/pause (rate in the toolbar, frames per second)</td></tr>
<tr><td>H</td><td>heat map on/off</td></tr>
<tr><td>Ctrl+Shift+H</td><td>occlusion check of the slice (slow; Esc cancels)</td></tr>
<tr><td>hold <b>Space</b> (in the image)</td><td>hide the heat map while held, to compare</td></tr>
<tr><td>F5 / Esc</td><td>classify all open images / cancel</td></tr>
<tr><td>Ctrl+M / Shift+F5</td><td>MPR: axial, coronal, sagittal views with linked crosshairs / classify the axial reformats</td></tr>
<tr><td>Ctrl+2 / Ctrl+Shift+R / Ctrl+Shift+Y</td><td>side by side: two views / what the right shows (heat map vs plain, another series) / synchronise slice, zoom and pan</td></tr>
<tr><td>D / B / E / Shift+D, Esc</td><td>measure: distance / rectangle / ellipse / freehand region (left-drag); Esc leaves the tool</td></tr>
<tr><td>K / N / Del / Ctrl+Shift+M</td><td>key image / note on the slice / delete the selected measurement / the Measurements panel</td></tr>
<tr><td>Ctrl+O, Ctrl+Shift+O, Ctrl+D</td><td>open images, a folder, a DICOM folder (or drop them on the window)</td></tr>
<tr><td>Ctrl+Shift+A / Ctrl+Shift+U</td><td>open from a DICOMweb archive / send the last report's DICOM outputs to it</td></tr>
<tr><td>Ctrl+E / Ctrl+Shift+E</td><td>export the image with its overlay (PNG) / the results (CSV)</td></tr>
<tr><td>Ctrl+R</td><td>write a report (PDF, HTML, DICOM) of the selection, a series or everything</td></tr>
</table>
"""


def research_banner() -> QLabel:
    """The permanent notice at the top of the window (it cannot be closed or hidden)."""
    banner = QLabel(f"⚠  {BANNER_TEXT}")
    banner.setObjectName("researchBanner")
    banner.setWordWrap(True)
    banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
    banner.setStyleSheet(
        "QLabel#researchBanner { background-color: #ffc107; color: #1a1a1a; font-weight: bold; "
        "padding: 5px 10px; border-bottom: 2px solid #b38600; }"
    )
    banner.setToolTip(RESEARCH_USE_NOTICE)
    return banner


def show_shortcuts(parent: QWidget) -> None:
    QMessageBox.information(parent, "Keyboard and mouse", SHORTCUTS_HTML)


def show_about(parent: QWidget, settings_location: str) -> None:
    QMessageBox.about(
        parent, "About brainscan",
        f"<b>brainscan viewer {__version__}</b><p>{RESEARCH_USE_NOTICE}</p><p>Settings: {settings_location}</p>",
    )
