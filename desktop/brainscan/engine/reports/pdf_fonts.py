"""Fonts of the PDF report: Helvetica where it can, embedded TrueType fallbacks for every other character.

reportlab's Helvetica is a standard PDF font in the WinAnsi (cp1252) encoding: Chinese, Japanese,
Korean, emoji and most letters outside Western Europe came out as black boxes. Text that goes into
a paragraph passes :func:`escape`, which XML-escapes it and wraps each run of characters Helvetica
lacks in ``<font name=...>`` of the first fallback that has them:

=============================  ====================================================================
``BrainscanDejaVuSans``        DejaVu Sans 2.37: Latin, Greek, Cyrillic, symbols (Bitstream Vera)
``BrainscanDroidSansFallback`` Droid Sans Fallback: Chinese, Japanese, Korean (Apache-2.0)
``BrainscanNotoEmoji``         Noto Emoji 3.002, monochrome emoji (SIL OFL 1.1)
=============================  ====================================================================

The files live in ``resources/fonts`` (their origin and licences: ``resources/PROVENANCE.md``);
reportlab embeds only the glyphs a report uses. Without them (an installation lacking the
resources) the report is still written, with boxes for those characters and a warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from xml.sax.saxutils import escape as xml_escape

from brainscan.engine.resources import resources_dir

log = logging.getLogger(__name__)

FONTS_DIR = "fonts"
FALLBACK_FONTS = (  # (reportlab name, file in resources/fonts), tried in this order
    ("BrainscanDejaVuSans", "DejaVuSans.ttf"),
    ("BrainscanDroidSansFallback", "DroidSansFallback.ttf"),
    ("BrainscanNotoEmoji", "NotoEmoji-Variable.ttf"),
)


def _in_base_font(text: str) -> bool:
    """Whether Helvetica (WinAnsi, that is cp1252) can show every character of ``text``."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


@cache
def fallback_fonts() -> tuple[tuple[str, Mapping[int, int]], ...]:
    """Register the fallback fonts with reportlab, once; (name, code point to glyph) of those usable.

    A font file that is missing or unreadable is left out with a warning: the characters only it
    has then show as boxes, as they did before.
    """
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    _fix_to_unicode_beyond_the_bmp()
    usable = []
    for name, filename in FALLBACK_FONTS:
        path = resources_dir() / FONTS_DIR / filename
        try:
            font = TTFont(name, str(path))
        except (OSError, TTFError) as exc:
            log.warning("PDF report font %s is unusable (%s): characters only it has will show as boxes "
                        "(reinstall brainscan, or point BRAINSCAN_RESOURCES at a complete resources folder)",
                        path, exc)
            continue
        pdfmetrics.registerFont(font)
        for bold in (0, 1):  # <b> and <i> around a fallback run keep the same face (no bold files shipped)
            for italic in (0, 1):
                addMapping(name, bold, italic, name)
        usable.append((name, font.face.charToGlyph))
    return tuple(usable)


def _fix_to_unicode_beyond_the_bmp() -> None:
    """Make reportlab's ToUnicode maps write characters beyond U+FFFF as UTF-16 (surrogate pairs).

    reportlab 4 and 5 write ``<%04X>`` of the code point, so U+1F9E0 became ``<1F9E0>``, which PDF
    readers take for U+1F9E and the next digit: copied or extracted text showed the wrong
    character for every emoji. Characters of the Basic Multilingual Plane keep the same map.
    """
    from reportlab.pdfbase import ttfonts

    original = ttfonts.makeToUnicodeCMap
    if getattr(original, "brainscan_utf16", False):
        return

    def make_to_unicode_cmap(fontname, subset):
        text = original(fontname, subset)
        for index, code in enumerate(subset):
            if code > 0xFFFF:
                text = text.replace(f"\n<{index:02X}> <{code:04X}>\n",
                                    f"\n<{index:02X}> <{chr(code).encode('utf-16-be').hex().upper()}>\n", 1)
        return text

    make_to_unicode_cmap.brainscan_utf16 = True
    ttfonts.makeToUnicodeCMap = make_to_unicode_cmap


def font_for(character: str) -> str | None:
    """The fallback font to show ``character`` in: None for Helvetica, or when no font has it."""
    if _in_base_font(character):
        return None
    code = ord(character)
    return next((name for name, glyphs in fallback_fonts() if code in glyphs), None)


def escape(text: str) -> str:
    """``text`` XML-escaped for a reportlab paragraph, runs Helvetica lacks set in a fallback font.

    >>> escape("scan <1>.jpg")
    'scan &lt;1&gt;.jpg'
    """
    text = str(text)
    if _in_base_font(text):  # nearly every string: no per-character work
        return xml_escape(text)
    parts: list[str] = []
    run, current = "", None
    for character in text:
        font = font_for(character)
        if run and font != current:
            parts.append(_markup(run, current))
            run = ""
        run, current = run + character, font
    if run:
        parts.append(_markup(run, current))
    return "".join(parts)


def _markup(run: str, font: str | None) -> str:
    return xml_escape(run) if font is None else f'<font name="{font}">{xml_escape(run)}</font>'
