"""The "Measurements and key images" section of the PDF and HTML reports: gathered once, rendered by both.

Each key image is shown as its thumbnail (the report's own, when the frame has one) with its note; each
measurement as a row: where, kind, label and figures (length in mm, area in mm², mean, standard deviation,
minimum, maximum and pixel count of the region's stored values; "px" without Pixel Spacing).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from brainscan.engine.results.annotations import Annotations, Figures
from brainscan.engine.results.record import FrameKey, frame_key

SECTION_TITLE = "Measurements and key images"
MEASUREMENT_HEAD = ["image", "kind", "label", "length", "area", "mean", "sd", "min", "max", "pixels"]


@dataclass
class KeyImageEntry:
    where: str
    note: str
    thumbnail: Path | None = None


@dataclass
class AnnotationSection:
    """What the section shows (empty when the study has no annotations on the frames reported)."""

    key_images: list[KeyImageEntry] = field(default_factory=list)
    measurements: list[list[str]] = field(default_factory=list)  # rows, without the header

    def __bool__(self) -> bool:
        return bool(self.key_images or self.measurements)

    def measurement_rows(self) -> list[list[str]]:
        return [list(MEASUREMENT_HEAD), *self.measurements]


def _num(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def figure_cells(figures: Figures | None) -> list[str]:
    """length, area, mean, sd, min, max, pixels as text (units on the length and area)."""
    if figures is None:
        return [""] * 7
    unit = figures.unit
    return [
        f"{figures.length:.1f} {unit}" if figures.length is not None else "",
        f"{figures.area:.1f} {unit}²" if figures.area is not None else "",
        _num(figures.mean), _num(figures.sd), _num(figures.minimum, 0) if figures.minimum is not None else "",
        _num(figures.maximum, 0) if figures.maximum is not None else "",
        str(figures.pixels) if figures.pixels is not None else "",
    ]


def gather(annotations: Annotations | None, entries: Iterable) -> AnnotationSection:
    """The section for the report's ``entries`` (:class:`~brainscan.engine.reports.content.ImageEntry`): only the
    annotations of the frames reported, in the report's order of frames, each shown as the report names it."""
    section = AnnotationSection()
    if not annotations:
        return section
    by_key: dict[FrameKey, object] = {frame_key(e.record.path, e.record.frame): e for e in entries}
    order = {key: n for n, key in enumerate(by_key)}
    for key_image in sorted(annotations.key_images, key=lambda k: order.get(k.frame, len(order))):
        entry = by_key.get(key_image.frame)
        if entry is not None:
            section.key_images.append(KeyImageEntry(entry.where, key_image.note, entry.thumbnail))
    for measurement in sorted(annotations.measurements, key=lambda m: (order.get(m.frame, len(order)), m.ident)):
        entry = by_key.get(measurement.frame)
        if entry is not None:
            section.measurements.append([entry.where, measurement.name, measurement.label,
                                         *figure_cells(measurement.figures)])
    return section


def render_html(section: AnnotationSection) -> str:
    """The section as HTML (id ``annotations``: key images as figures, the measurements as a table)."""
    if not section:
        return ""
    out = [f"<h2 id=annotations>{escape(SECTION_TITLE)}</h2>"]
    if section.key_images:
        out.append("<h3>Key images</h3><div class='gallery keyimages'>")
        for item in section.key_images:
            image = ""
            if item.thumbnail is not None and Path(item.thumbnail).is_file():
                data = base64.b64encode(Path(item.thumbnail).read_bytes()).decode("ascii")
                image = f"<img alt='key image' src='data:image/png;base64,{data}'>"
            out.append(f"<div class='thumb keyimage'>{image}<div>{escape(item.where)}</div>"
                       f"<div class=note>{escape(item.note) or '<i>(no note)</i>'}</div></div>")
        out.append("</div>")
    if section.measurements:
        rows = section.measurement_rows()
        head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
        body = "".join("<tr class=measurement>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows[1:])
        out.append(f"<h3>Measurements</h3><table class=measurements><tr>{head}</tr>{body}</table>")
        out.append("<p class=small>Figures from the stored pixel values and Pixel Spacing; a region's pixels are "
                   "those whose centre lies inside it; px: the image has no Pixel Spacing.</p>")
    return "\n".join(out)


def pdf_story(section: AnnotationSection, styles, width: float, table) -> list:
    """The section as reportlab flowables (``table`` builds a styled table: pdf_report's)."""
    from reportlab.platypus import Image, Paragraph

    from brainscan.engine.reports.pdf_fonts import escape as pdf_escape

    if not section:
        return []
    story: list = [Paragraph(pdf_escape(SECTION_TITLE), styles["h2"])]
    if section.key_images:
        story.append(Paragraph("Key images", styles["h3"]))
        rows = []
        for item in section.key_images:
            picture = (Image(str(item.thumbnail), width=110, height=110, kind="proportional")
                       if item.thumbnail is not None and Path(item.thumbnail).is_file() else "")
            text = f"{pdf_escape(item.where)}<br/><b>{pdf_escape(item.note or '(no note)')}</b>"
            rows.append([picture, Paragraph(text, styles["small"])])
        story.append(table(rows, [120, width - 130], header=False))
    if section.measurements:
        story.append(Paragraph("Measurements", styles["h3"]))
        rows = [[Paragraph(pdf_escape(c), styles["small"]) for c in row] for row in section.measurement_rows()]
        fractions = (0.24, 0.08, 0.14, 0.08, 0.1, 0.07, 0.07, 0.07, 0.07, 0.07)
        story.append(table(rows, [f * width * 0.98 for f in fractions]))
    return story
