"""A person's measurements and key images as content of the Comprehensive 3D SR (TID 1500).

Each measurement is a TID 1410 planar ROI group: its region as an SCOORD (``POLYLINE`` for a line, a
rectangle or a freehand outline, ``ELLIPSE`` by its two axes' end points) referencing the source image (and
frame), and its figures as NUM items: SCT 410668003 "Length" in UCUM ``mm``, SCT 42798000 "Area" in ``mm2``,
SCT "Mean", "Standard Deviation", "Minimum", "Maximum" of the region's stored values (unit "1"), and the
mask's pixel count (a local code). Without Pixel Spacing the lengths and areas are in pixels (the UCUM
annotations ``{pixel}`` and ``{square pixel}``).

Each key image is a TID 1501 group whose source IMAGE is the slice and whose TEXT item DCM 113012 "Key Object
Description" holds the note (under the group's qualitative evaluations, which TID 1501 allows as TEXT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from pydicom.dataset import Dataset

from brainscan.engine.reports import sr_codes
from brainscan.engine.results.annotations import Annotations, Measurement
from brainscan.engine.results.record import FrameKey

PIXEL_COUNT = ("PIXELS", sr_codes.LOCAL_SCHEME, "Pixels in region")


def _units(unit: str):
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    if unit == "mm":
        return codes.UCUM.Millimeter, codes.UCUM.SquareMillimeter
    return CodedConcept("{pixel}", "UCUM", "pixel"), CodedConcept("{square pixel}", "UCUM", "square pixel")


def region_points(measurement: Measurement) -> tuple[str, np.ndarray]:
    """(graphic type, column/row points) of a measurement's SCOORD (DICOM's pixel origin is the first pixel's
    top-left corner: the same coordinates as the measurement's)."""
    pts = np.asarray(measurement.points, dtype=np.float64)
    if measurement.kind == "line":
        return "POLYLINE", pts
    if measurement.kind == "freehand":
        return "POLYLINE", np.vstack([pts, pts[:1]])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    if measurement.kind == "rectangle":
        return "POLYLINE", np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # ELLIPSE: the major axis' end points, then the minor axis'
    horizontal = np.array([[x0, cy], [x1, cy]])
    vertical = np.array([[cx, y0], [cx, y1]])
    major, minor = (horizontal, vertical) if (x1 - x0) >= (y1 - y0) else (vertical, horizontal)
    return "ELLIPSE", np.vstack([major, minor])


def _numbers(measurement: Measurement) -> list:
    from highdicom import sr
    from pydicom.sr.codedict import codes

    figures = measurement.figures
    if figures is None:
        return []
    length_unit, area_unit = _units(figures.unit)
    found = []
    for name, value, unit in (
        (codes.SCT.Length, figures.length, length_unit),
        (codes.SCT.Area, figures.area, area_unit),
        (codes.SCT.Mean, figures.mean, codes.UCUM.NoUnits),
        (codes.SCT.StandardDeviation, figures.sd, codes.UCUM.NoUnits),
        (codes.SCT.Minimum, figures.minimum, codes.UCUM.NoUnits),
        (codes.SCT.Maximum, figures.maximum, codes.UCUM.NoUnits),
        (sr.CodedConcept(*PIXEL_COUNT), figures.pixels, codes.UCUM.NoUnits),
    ):
        if value is not None and math.isfinite(value):
            found.append(sr.Measurement(name=name, value=round(float(value), 4), unit=unit))
    return found


def annotation_groups(annotations: Annotations, headers: Mapping[FrameKey, Dataset],
                      derive: Callable[..., str], *, keep_text: bool = True) -> list:
    """The TID 1500 groups of the measurements and key images whose frame has a header in ``headers``
    (the study's classified DICOM frames, by frame key); ``derive`` makes the tracking UIDs. Without
    ``keep_text`` (de-identified objects) the free text a person typed (labels, notes) is left out."""
    from highdicom import sr

    groups = []
    for measurement in annotations.measurements:
        header = headers.get(measurement.frame)
        if header is None:
            continue
        frame = measurement.frame[1]
        multiframe = int(header.get("NumberOfFrames") or 1) > 1
        source = sr.SourceImageForRegion.from_source_image(header, [frame + 1] if multiframe else None)
        graphic_type, points = region_points(measurement)
        description = (measurement.label if keep_text else "") or f"{measurement.name} {measurement.ident}"
        groups.append(sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=sr.TrackingIdentifier(
                uid=derive("annotation", header.SOPInstanceUID, frame, measurement.ident),
                identifier=description[:64]),
            referenced_region=sr.ImageRegion(graphic_type=graphic_type, graphic_data=points, source_image=source),
            measurements=_numbers(measurement),
        ))
    for key_image in annotations.key_images:
        header = headers.get(key_image.frame)
        if header is None:
            continue
        frame = key_image.frame[1]
        multiframe = int(header.get("NumberOfFrames") or 1) > 1
        source = sr.SourceImageForMeasurementGroup.from_source_image(header, [frame + 1] if multiframe else None)
        group = sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=sr.TrackingIdentifier(
                uid=derive("key-image", header.SOPInstanceUID, frame), identifier="key image"),
            source_images=[source],
        )
        note = sr.TextContentItem(
            name=sr.CodedConcept("113012", "DCM", "Key Object Description"),
            value=((key_image.note if keep_text else "") or "key image")[:1024],
            relationship_type=sr.RelationshipTypeValues.CONTAINS,
        )
        group[0].ContentSequence.append(note)
        groups.append(group)
    return groups
