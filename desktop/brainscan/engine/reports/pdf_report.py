"""The PDF report, laid out with reportlab's platypus (text, tables and pictures, not a screenshot).

Every page carries the research-use notice in its header and footer (drawn by the page template),
and, when the run's model was not verified against its weights checksum, a warning band under the
header; tables repeat their header row and split across pages.
"""

from __future__ import annotations

import io
from pathlib import Path

from brainscan.engine.reports import annotation_content, common
from brainscan.engine.reports.content import (
    ImageEntry,
    ReportContent,
    fmt,
    integrity_warning,
    model_facts,
    provenance_facts,
    series_text,
    validation_facts,
    verdict_text,
)
from brainscan.engine.reports.pdf_fonts import escape  # XML escape with fallback fonts for CJK, emoji
from brainscan.engine.reports.thumbnails import colour_bar, png_bytes

TABLE_CHUNK = 250  # rows per table object: reportlab splits long tables slowly
GALLERY_COLUMNS = 5
THUMB_POINTS = 130
WARNING_BAND = 14  # points: the unverified-model band under the header


def _styles():
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontSize=9, leading=11)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=18, leading=22),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=13, leading=16, spaceBefore=10),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontSize=10, leading=13),
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=7.5, leading=9, wordWrap="CJK"),
        "flag": ParagraphStyle("flag", parent=body, fontSize=7.5, leading=9, textColor="#8a5a00", wordWrap="CJK"),
        "error": ParagraphStyle("error", parent=body, fontSize=7.5, leading=9, textColor="#aa0000", wordWrap="CJK"),
    }


def _page_decorations(notice: str, title: str, warning: str = ""):
    from reportlab.lib import colors

    def draw(canvas, doc) -> None:
        width, height = doc.pagesize
        canvas.saveState()
        if warning:  # an unverified model: a band under the header of every page
            canvas.setFillColor(colors.HexColor("#ffc107"))
            canvas.rect(0, height - 22 - WARNING_BAND, width, WARNING_BAND, stroke=0, fill=1)
            canvas.setFillColor(colors.HexColor("#8b0000"))
            canvas.setFont("Helvetica-Bold", 8.5)
            canvas.drawCentredString(width / 2, height - 32.5, f"{warning}; its results may come from altered weights")
        canvas.setFillColor(colors.HexColor("#8b0000"))
        canvas.rect(0, height - 22, width, 22, stroke=0, fill=1)
        canvas.rect(0, 0, width, 20, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        canvas.setFont("Helvetica-Bold", 9.5)
        canvas.drawCentredString(width / 2, height - 15, notice)
        canvas.setFont("Helvetica", 8)
        canvas.drawString(doc.leftMargin, 7, f"{notice}  {title}")
        canvas.drawRightString(width - doc.rightMargin, 7, f"page {doc.page}")
        canvas.restoreState()

    return draw


def _table(rows, col_widths=None, *, header: bool = True, shading=()):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=col_widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")))
    style += [("BACKGROUND", (0, r), (-1, r), colors.HexColor(c)) for r, c in shading]
    table.setStyle(TableStyle(style))
    return table


def _facts(facts: list[tuple[str, str]], styles, width: float):
    from reportlab.platypus import Paragraph

    rows = [[Paragraph(f"<b>{escape(k)}</b>", styles["small"]), Paragraph(escape(v), styles["small"])] for k, v in facts]
    return _table(rows, [0.22 * width, 0.78 * width], header=False)


def _image_rows(entries: list[ImageEntry], content: ReportContent, styles, widths):
    from reportlab.platypus import Paragraph

    head = ["path", "frame", "class", *content.probability_heads(), "tumour p", "flag for review"]
    if content.identifiers_shown:
        head.append("patient")
    rows = [[Paragraph(f"<b>{escape(h)}</b>", styles["small"]) for h in head]]
    shading = []
    for entry in entries:
        row = [Paragraph(escape(entry.path), styles["small"]), str(entry.frame)]
        if entry.ok:
            row.append(entry.display_label)
            row += [fmt(entry.probabilities.get(c, float("nan"))) for c in content.classes]
            row.append(fmt(entry.tumour_probability))
            row.append(Paragraph("<br/>".join(escape(line) for line in entry.flags), styles["flag"]))
            if entry.flags:
                shading.append((len(rows), "#fff4d6"))
        else:
            row.append(Paragraph(escape("error: " + entry.error), styles["error"]))
            row += [""] * (len(content.classes) + 2)
            shading.append((len(rows), "#fde2e2"))
        if content.identifiers_shown:
            row.append(Paragraph(escape(" / ".join(entry.identifiers.values())), styles["small"]))
        rows.append(row)
    table = _table(rows, widths, shading=shading)
    if any(not e.ok for e in entries):
        styles_span = [("SPAN", (2, r), (2 + len(content.classes) + 2, r)) for r, c in shading if c == "#fde2e2"]
        from reportlab.platypus import TableStyle

        table.setStyle(TableStyle(styles_span))
    return table


def build_story(content: ReportContent, width: float) -> list:
    from reportlab.platypus import Image, Paragraph, Spacer

    s = _styles()
    rule_line = content.verdict_rule_line()
    story: list = [
        Paragraph(escape(content.title), s["title"]),
        Paragraph(f"<b>{escape(content.notice)}</b>", s["body"]),
        Paragraph(escape(f"Written {content.created} by {content.run.get('application', '')}."), s["small"]),
        Paragraph("Summary", s["h2"]),
        Paragraph(escape(content.summary_line()), s["body"]),
        *(Paragraph(escape(line), s["body"]) for line in (content.folder_line(), rule_line) if line),
        Spacer(1, 4),
        _table(content.class_rows()),
    ]
    story += [Paragraph(escape(note), s["small"]) for note in content.notes]

    if content.series:
        story.append(Paragraph("Series", s["h2"]))
        rows = [["series", "slices", "classified", "errors", "out of domain", "verdict", "labels",
                 "most suspicious slice", "tumour p"]]
        for item in content.series:
            labels, where = series_text(item, content.common_folder, content.sources)
            rows.append([Paragraph(escape(item.series_uid), s["small"]), str(item.slices), str(item.ok),
                         str(item.errors), str(item.out_of_domain), Paragraph(escape(verdict_text(item)), s["small"]),
                         Paragraph(escape(labels), s["small"]), Paragraph(escape(where), s["small"]),
                         fmt(item.max_tumour_probability or float("nan"))])
        story.append(_table(rows, [w * width for w in (0.16, 0.05, 0.065, 0.05, 0.065, 0.16, 0.12, 0.26, 0.07)]))

    story.append(Paragraph("Per image", s["h2"]))
    k = len(content.classes)
    fixed = 0.05 + 0.1 + 0.065 * k + 0.07
    flag = 0.17
    ident = 0.12 if content.identifiers_shown else 0.0
    path = max(0.12, 1.0 - fixed - flag - ident)
    fractions = [path, 0.05, 0.1, *([0.065] * k), 0.07, flag] + ([ident] if ident else [])
    widths = [f * width * 0.98 for f in fractions]
    for start in range(0, len(content.table), TABLE_CHUNK):
        story.append(_image_rows(content.table[start:start + TABLE_CHUNK], content, s, widths))

    if content.errors:
        story.append(Paragraph(f"Errors ({len(content.errors)})", s["h2"]))
        story += [Paragraph(escape(f"{e.where}: {e.error}"), s["error"]) for e in content.errors]

    if content.gallery:
        story.append(Paragraph("Heat maps", s["h2"]))
        if content.run.get("cam_method"):
            bar = Image(io.BytesIO(png_bytes(colour_bar(content.colormap))), width=200, height=10)
            story.append(_table([[Paragraph("0 low", s["small"]), bar, Paragraph("1 high", s["small"])]],
                                [30, 206, 40], header=False))
            story.append(Paragraph(escape(f"{content.run.get('cam_method')} heat map of the predicted class, colour map "
                                          f"{content.colormap}, opacity {content.opacity:.2f}."), s["small"]))
            story.append(Spacer(1, 4))
        cells = []
        for entry in content.gallery:
            picture = Image(str(entry.thumbnail), width=THUMB_POINTS, height=THUMB_POINTS, kind="proportional")
            text = f"<b>{escape(entry.display_label)} {fmt(entry.confidence, 2)}</b> (tumour p {fmt(entry.tumour_probability, 2)})<br/>"
            text += escape(entry.where)
            for line in entry.flags:
                text += f"<br/><font color='#8a5a00'>{escape(line)}</font>"
            cells.append([picture, Paragraph(text, s["small"])])
        grid = [cells[i:i + GALLERY_COLUMNS] for i in range(0, len(cells), GALLERY_COLUMNS)]
        grid[-1] += [""] * (GALLERY_COLUMNS - len(grid[-1]))
        story.append(_table(grid, [width / GALLERY_COLUMNS] * GALLERY_COLUMNS, header=False))

    story += annotation_content.pdf_story(content.annotations, s, width, _table)
    story.append(Paragraph("Model card", s["h2"]))
    story.append(_facts(model_facts(content.run), s, width))
    facts, per_class = validation_facts(content.run)
    story.append(Paragraph("Validation (from the model contract)", s["h3"]))
    story.append(_facts(facts, s, width))
    if per_class:
        story.append(Spacer(1, 4))
        story.append(_table(per_class))
    story.append(Paragraph("Provenance", s["h2"]))
    story.append(_facts(provenance_facts(content.run, content), s, width))
    story.append(Paragraph("Inputs", s["h3"]))
    rows = [["path", "kind", "SHA-256 (raster) or SOP Instance UID (DICOM)"]]
    rows += [[Paragraph(escape(i.path), s["small"]), i.kind, Paragraph(escape(i.fingerprint or i.note), s["small"])]
             for i in content.inputs]
    for start in range(0, len(rows) - 1, TABLE_CHUNK):
        story.append(_table([rows[0], *rows[1 + start:1 + start + TABLE_CHUNK]], [0.45 * width, 0.07 * width, 0.48 * width]))
    return story


def render_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes."""
    from reportlab import rl_config
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

    rl_config.useA85 = 0  # binary image streams: ASCII85 in pure Python took seconds per hundred pictures
    warning = integrity_warning(content.run)
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=28, rightMargin=28, topMargin=36 + (WARNING_BAND if warning else 0), bottomMargin=32,
        title=f"{content.title} - {common.RESEARCH_BANNER}",
        author="brainscan",
        subject=content.notice,
        creator=str(content.run.get("application", "brainscan")),
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body")
    decorations = _page_decorations(content.notice, content.title, warning)
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=decorations)])
    doc.build(build_story(content, doc.width))
    return buffer.getvalue()


def write_pdf(content: ReportContent, path: Path) -> Path:
    """Write the report to ``path`` atomically.

    Raises
    ------
    OSError
        When it cannot be written (the caller turns it into a one-line message).
    """
    common.write_atomic(path, render_pdf(content))
    return path
