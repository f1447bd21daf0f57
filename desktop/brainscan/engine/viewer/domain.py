"""How the viewer marks the frames the model should not be trusted on, as plain text.

A frame out of domain (:attr:`~brainscan.engine.results.record.FrameRecord.in_domain` False: a blank
picture, almost no foreground, a DICOM mosaic) keeps its probabilities for research, but the table
greys its class and the slice view carries a badge; a heat map mostly outside the head
(:attr:`~brainscan.engine.results.record.FrameRecord.heat_outside` above :data:`HEAT_OUTSIDE_WARNING`)
is a warning sign, shown as such.
"""

from __future__ import annotations

import math

from brainscan.engine.input.picture_checks import HEAT_OUTSIDE_WARNING  # the reports' bound too
from brainscan.engine.results.record import FrameRecord

DOMAIN_CHOICES = (("any", ""), ("in domain", "in"), ("out of domain", "out"))
"""The table's domain filter: what it shows, and the :class:`~brainscan.engine.viewer.results.RowFilter` value."""


def out_of_domain(record: FrameRecord | None) -> bool:
    """Judged not the kind of picture the model knows (never an unjudged record)."""
    return record is not None and record.in_domain is False


def domain_text(record: FrameRecord) -> str:
    """The table's Domain cell: ``"in"``, ``"OUT: reason"``, or empty when not judged."""
    if record.in_domain is None:
        return ""
    if record.in_domain:
        return "in"
    return f"OUT: {record.domain_reason}" if record.domain_reason else "OUT"


def heat_outside_high(record: FrameRecord | None) -> bool:
    """The heat map lies mostly outside the head (False when there is no share)."""
    return record is not None and not math.isnan(record.heat_outside) and record.heat_outside > HEAT_OUTSIDE_WARNING


def heat_outside_text(record: FrameRecord) -> str:
    """The table's Heat outside cell: a whole percent, empty without a heat map."""
    return "" if math.isnan(record.heat_outside) else f"{record.heat_outside:.0%}"


def slice_warnings(record: FrameRecord | None) -> tuple[str, str]:
    """What the slice view says over the frame: the out-of-domain badge and the heat-map warning ("" for none)."""
    if record is None:
        return "", ""
    badge = ""
    if out_of_domain(record):
        badge = "OUT OF DOMAIN" + (f" — {record.domain_reason}" if record.domain_reason else "")
    heat = f"heat mostly outside the head: {record.heat_outside:.0%}" if heat_outside_high(record) else ""
    return badge, heat

