"""The HTML report: one self-contained file (inline CSS, pictures as base64 data URIs, no links out).

The research-use notice heads and ends the page, and in print it repeats at the top and bottom of
every printed page; so does the unverified-model warning when the run's model was not verified.
"""

from __future__ import annotations

import base64
from html import escape
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
from brainscan.engine.reports.thumbnails import colour_bar, png_bytes

CSS = """
body{font-family:Helvetica,Arial,sans-serif;font-size:13px;color:#222;margin:0 24px 48px 24px}
.notice{background:#8b0000;color:#fff;font-weight:bold;padding:6px 10px;text-align:center}
.notice.top{margin:0 -24px 12px -24px}.notice.bottom{margin:24px -24px 0 -24px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:#fff4d6}tr.err td{background:#fde2e2}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.thumb{width:200px;font-size:11px;word-break:break-all}
.thumb img{display:block;max-width:192px;max-height:192px;image-rendering:auto}
.flagtext{color:#8a5a00}.errtext{color:#a00}.small{font-size:11px;color:#555}
.bar img{width:256px;height:12px;display:block}.bar span{display:inline-block;width:128px;font-size:11px}
.bar span.r{text-align:right}
.unverified{display:block;background:#ffc107;color:#8b0000;margin:6px -10px -6px -10px;padding:4px 10px}
@media print{.notice.top{position:fixed;top:0;left:0;right:0;margin:0}
.notice.bottom{position:fixed;bottom:0;left:0;right:0;margin:0}body{margin:40px 12px}
tr,.thumb{page-break-inside:avoid}body.unverified-model{margin:68px 12px}}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _facts_table(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"<table>{rows}</table>"


def _grid(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _image_row(entry: ImageEntry, content: ReportContent) -> str:
    cells = [f"<td>{escape(entry.path)}</td>", f"<td class=num>{entry.frame}</td>"]
    if entry.ok:
        cells.append(f"<td>{escape(entry.display_label)}</td>")
        cells += [f"<td class=num>{fmt(entry.probabilities.get(c, float('nan')))}</td>" for c in content.classes]
        cells.append(f"<td class=num>{fmt(entry.tumour_probability)}</td>")
        cells.append(f"<td class=flagtext>{'<br>'.join(escape(line) for line in entry.flags)}</td>")
        css = " class=flag" if entry.flags else ""
    else:
        cells.append(f"<td colspan={len(content.classes) + 3} class=errtext>error: {escape(entry.error)}</td>")
        css = " class=err"
    if content.identifiers_shown:
        cells.append(f"<td>{escape(' / '.join(entry.identifiers.values()))}</td>")
    return f"<tr{css}>{''.join(cells)}</tr>"


def render_html(content: ReportContent) -> str:
    """The report as one HTML document (str)."""
    notice = escape(content.notice)
    warning = integrity_warning(content.run)
    banner = notice
    if warning:  # inside the notice, so it repeats with it on every printed page
        banner += f"<span class=unverified>{escape(warning)}; its results may come from altered weights</span>"
    rule_line = content.verdict_rule_line()
    out: list[str] = [
        "<!DOCTYPE html>",
        "<html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(content.title)} - {escape(common.RESEARCH_BANNER)}</title>",
        f"<style>{CSS}</style></head><body{' class=unverified-model' if warning else ''}>",
        f"<div class='notice top'>{banner}</div>",
        f"<h1>{escape(content.title)}</h1>",
        f"<p class=small>Written {escape(content.created)} by {escape(str(content.run.get('application', '')))}. "
        f"{notice}</p>",
        "<h2>Summary</h2>",
        f"<p>{escape(content.summary_line())}</p>",
        *([f"<p>{escape(line)}</p>" for line in (content.folder_line(), rule_line) if line]),
        _grid(content.class_rows()),
    ]
    out += [f"<p class=small>{escape(note)}</p>" for note in content.notes]
    if content.series:
        out.append("<h2>Series</h2>")
        rows = [["series", "slices", "classified", "errors", "out of domain", "verdict", "labels",
                 "most suspicious slice", "tumour probability"]]
        for item in content.series:
            labels, where = series_text(item, content.common_folder, content.sources)
            rows.append([item.series_uid, str(item.slices), str(item.ok), str(item.errors), str(item.out_of_domain),
                         verdict_text(item), labels, where, fmt(item.max_tumour_probability or float("nan"))])
        out.append(_grid(rows))
    out.append("<h2>Per image</h2>")
    head = ["path", "frame", "class", *content.probability_heads(), "tumour p", "flag for review"]
    if content.identifiers_shown:
        head.append("patient (name / ID / birth date)")
    out.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
    out += [_image_row(e, content) for e in content.table]
    out.append("</table>")
    if content.errors:
        out.append(f"<h2>Errors ({len(content.errors)})</h2><ul>")
        out += [f"<li class=errtext>{escape(e.where)}: {escape(e.error)}</li>" for e in content.errors]
        out.append("</ul>")
    if content.gallery:
        out.append("<h2>Heat maps</h2>")
        if content.run.get("cam_method"):
            bar = _data_uri(png_bytes(colour_bar(content.colormap)))
            out.append(f"<div class=bar><img alt='colour bar' src='{bar}'><span>0 low</span><span class=r>1 high</span>"
                       f"<div class=small>{escape(str(content.run.get('cam_method')))} heat map of the predicted class, "
                       f"colour map {escape(content.colormap)}, opacity {content.opacity:.2f}</div></div>")
        out.append("<div class=gallery>")
        for entry in content.gallery:
            image = _data_uri(Path(entry.thumbnail).read_bytes()) if entry.thumbnail else ""
            flag = "".join(f"<div class=flagtext>{escape(line)}</div>" for line in entry.flags)
            out.append(f"<div class=thumb><img alt='heat map' src='{image}'><b>{escape(entry.display_label)} "
                       f"{fmt(entry.confidence, 2)}</b> (tumour p {fmt(entry.tumour_probability, 2)})"
                       f"<div>{escape(entry.where)}</div>{flag}</div>")
        out.append("</div>")
    out.append(annotation_content.render_html(content.annotations))
    out.append("<h2>Model card</h2>")
    out.append(_facts_table(model_facts(content.run)))
    facts, per_class = validation_facts(content.run)
    out.append("<h3>Validation (from the model contract)</h3>" + _facts_table(facts) + _grid(per_class))
    out.append("<h2>Provenance</h2>")
    out.append(_facts_table(provenance_facts(content.run, content)))
    out.append("<h3>Inputs</h3>")
    rows = [["path", "kind", "SHA-256 (raster) or SOP Instance UID (DICOM)"]]
    rows += [[i.path, i.kind, i.fingerprint or i.note] for i in content.inputs]
    out.append(_grid(rows))
    out.append(f"<div class='notice bottom'>{banner}</div></body></html>")
    return "\n".join(out)


def write_html(content: ReportContent, path: Path) -> Path:
    """Write the report to ``path`` atomically.

    Raises
    ------
    OSError
        When it cannot be written (the caller turns it into a one-line message).
    """
    common.write_atomic(path, render_html(content).encode("utf-8"))
    return path
