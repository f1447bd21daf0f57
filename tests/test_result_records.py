"""One typed result record: a frame's row of ``results.csv`` / ``results.json`` and the per-series summary.

The expected bytes below were written by the results store before the record existed (its ``row``
and ``_typed`` dictionaries of strings); the record writes the same files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from brainscan.engine.input.frames import FrameRef
from brainscan.engine.results.record import FrameRecord, FrameResult, frame_key
from brainscan.engine.results.rows import (
    read_records,
    record_from_csv_row,
    record_to_csv_row,
    record_to_json,
    result_columns,
)
from brainscan.engine.results.series import summarize_series
from brainscan.engine.results.store import RESULTS_CSV, RESULTS_JSON, SERIES_CSV, ResultsStore

CLASSES = ("glioma", "notumor")
ODD_PATH = Path(os.fsdecode(b"scans/bad\xffname\nline%.png"))  # a byte that is not UTF-8, a newline, a %

EXPECTED_CSV = (
    "path,frame,status,label,confidence,tumour_probability,p_glioma,p_notumor,cam_method,cam_peak_row,cam_peak_col,"
    "width,height,series_uid,series_index,series_length,window_source,in_domain,domain_score,domain_reason,heat_outside,"
    "error,"
    "patient_name,patient_id,patient_birth_date\r\n"
    "scans/bad%FFname%0Aline%25.png,0,ok,'=notumor,0.750000,0.250000,0.250000,0.750000,gradcam,3,4,20,10,,,,none,"
    "true,0.875000,,0.125000,,'+Doe Jane,'@1,19700101\r\n"
    "/data/s1.dcm,2,ok,glioma,0.900000,0.900000,0.900000,0.100000,gradcam,,,6,5,9.1.2.3,4,9,tags,,,,,,,,\r\n"
    "/data/broken.jpg,0,error,,,,,,,,,,,,,,,,,,,/data/broken.jpg: cut short -x,,,\r\n"
    "'-rel.png,0,ok,notumor,1.000000,,,1.000000,gradcam,,,,,,,,,false,1.500000,'=blank picture,,,,,\r\n"
)
EXPECTED_SERIES_CSV = (
    "series_uid,slices,ok,errors,out_of_domain,labels,most_suspicious_index,most_suspicious_path,"
    "most_suspicious_frame,most_suspicious_label,max_tumour_probability,in_domain_slices,verdict,verdict_support\n"
    "9.1.2.3,1,1,0,0,glioma:1,4,/data/s1.dcm,2,glioma,0.900000,1,glioma,1\n"
)
NONE_BUT = dict.fromkeys(
    ["confidence", "tumour_probability", "p_glioma", "p_notumor", "cam_method", "cam_peak_row", "cam_peak_col",
     "width", "height", "series_uid", "series_index", "series_length", "window_source", "in_domain",
     "domain_score", "domain_reason", "heat_outside", "error", "patient_name", "patient_id", "patient_birth_date"])
EXPECTED_JSON_RESULTS = [
    {"path": "scans/bad%FFname%0Aline%25.png", "frame": 0, "status": "ok", "label": "=notumor", "confidence": 0.75,
     "tumour_probability": 0.25, "p_glioma": 0.25, "p_notumor": 0.75, "cam_method": "gradcam", "cam_peak_row": 3,
     "cam_peak_col": 4, "width": 20, "height": 10, "series_uid": None, "series_index": None, "series_length": None,
     "window_source": "none", "in_domain": True, "domain_score": 0.875, "domain_reason": None, "heat_outside": 0.125, "error": None,
     "patient_name": "+Doe Jane", "patient_id": "@1",
     "patient_birth_date": "19700101"},
    {**NONE_BUT, "path": "/data/s1.dcm", "frame": 2, "status": "ok", "label": "glioma", "confidence": 0.9,
     "tumour_probability": 0.9, "p_glioma": 0.9, "p_notumor": 0.1, "cam_method": "gradcam", "width": 6, "height": 5,
     "series_uid": "9.1.2.3", "series_index": 4, "series_length": 9, "window_source": "tags"},
    {**NONE_BUT, "path": "/data/broken.jpg", "frame": 0, "status": "error", "label": None,
     "error": "/data/broken.jpg: cut short -x"},
    {**NONE_BUT, "path": "-rel.png", "frame": 0, "status": "ok", "label": "notumor", "confidence": 1.0,
     "p_notumor": 1.0, "cam_method": "gradcam", "in_domain": False, "domain_score": 1.5,
     "domain_reason": "=blank picture"},
]
EXPECTED_SERIES = [{
    "series_uid": "9.1.2.3", "slices": 1, "ok": 1, "errors": 0, "out_of_domain": 0, "labels": {"glioma": 1},
    "most_suspicious_path": "/data/s1.dcm", "most_suspicious_frame": 2, "most_suspicious_index": 4,
    "most_suspicious_label": "glioma", "max_tumour_probability": 0.9, "tumour_probability_of": "1 - p(notumor)",
    "in_domain_slices": 1, "verdict": "glioma", "verdict_support": 1,
    "verdict_text": "glioma: 1 of 1 in-domain slices at p >= 0.90",
}]


def results() -> list[FrameResult]:
    """A formula-like label and identifiers, a DICOM slice, an error with a newline, NaN probabilities."""
    return [
        FrameResult(FrameRef(ODD_PATH), "ok", probabilities=np.array([0.25, 0.75], np.float32), label="=notumor",
                    confidence=0.75, tumour_probability=0.25, cam_peak=(3, 4), size=(10, 20), window_source="none",
                    in_domain=True, domain_score=0.875, heat_outside=0.125,
                    identifiers={"PatientName": "+Doe\nJane", "PatientID": "@1", "PatientBirthDate": "19700101"}),
        FrameResult(FrameRef(Path("/data/s1.dcm"), frame=2, kind="dicom", series_uid="1.2.3", series_index=4,
                             series_length=9), "ok", probabilities=np.array([0.9, 0.1]), label="glioma",
                    confidence=0.9, tumour_probability=0.9, size=(5, 6), window_source="tags"),
        FrameResult(FrameRef(Path("/data/broken.jpg")), "error", error="/data/broken.jpg: cut\nshort -x"),
        FrameResult(FrameRef(Path("-rel.png")), "ok", probabilities=np.array([math.nan, 1.0]), label="notumor",
                    confidence=1.0, tumour_probability=math.nan, in_domain=False, domain_score=1.5,
                    domain_reason="=blank picture"),
    ]


def same(a: FrameRecord, b: FrameRecord) -> bool:
    """Field by field, NaN equal to NaN."""
    def normal(value):
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        return value
    return all(normal(getattr(a, f.name)) == normal(getattr(b, f.name)) for f in fields(FrameRecord))


def csv_round_trip(records: list[FrameRecord], columns: list[str]) -> list[FrameRecord | None]:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(record_to_csv_row(r, columns) for r in records)
    buffer.seek(0)
    return [record_from_csv_row(row, CLASSES) for row in csv.DictReader(buffer)]


def test_the_results_files_are_byte_for_byte_those_written_before_the_record(tmp_path):
    with ResultsStore(tmp_path, CLASSES, include_identifiers=True, uid_map=lambda uid: "9." + uid) as store:
        for result in results():
            store.append(result, "gradcam" if result.ok else None)
        store.finalize({"x": 1})
    assert (tmp_path / RESULTS_CSV).read_bytes() == EXPECTED_CSV.encode()
    assert (tmp_path / SERIES_CSV).read_bytes() == EXPECTED_SERIES_CSV.encode()
    document = json.loads((tmp_path / RESULTS_JSON).read_text(encoding="utf-8"))
    assert document["results"] == EXPECTED_JSON_RESULTS
    assert document["series"] == EXPECTED_SERIES
    assert document["counts"] == {"ok": 3, "error": 1}


def test_a_record_reads_back_from_its_csv_row_exactly(tmp_path):
    records = [FrameRecord.from_result(r, CLASSES, "gradcam") for r in results()]
    odd, dicom, error, nan_row = records
    assert odd.path == ODD_PATH and odd.label == "=notumor" and odd.cam_peak == (3, 4)
    assert (odd.width, odd.height) == (20, 10) and odd.identifiers["patient_id"] == "@1"
    assert error.cam_method == "" and all(math.isnan(p) for p in error.probabilities.values())
    assert math.isnan(error.confidence) and error.series_index is None

    back = csv_round_trip(records, result_columns(CLASSES, include_identifiers=True))
    assert back[0].path == ODD_PATH and back[0].label == "=notumor" and back[0].identifiers["patient_name"] == "+Doe Jane"
    assert same(back[1], dicom) and same(back[3], nan_row)
    assert back[2].error == "/data/broken.jpg: cut short -x"  # free text is one printable line
    assert all(math.isnan(p) for p in back[2].probabilities.values())
    again = csv_round_trip([r for r in back if r is not None], result_columns(CLASSES, include_identifiers=True))
    assert all(same(a, b) for a, b in zip(back, again, strict=True))  # read back once, it stays as it is


def test_a_records_json_item_holds_its_csv_values_typed_and_exact():
    columns = result_columns(CLASSES, include_identifiers=True)
    records = [FrameRecord.from_result(r, CLASSES, "gradcam", uid_map=lambda uid: "9." + uid) for r in results()]
    items = [json.loads(json.dumps(record_to_json(r, columns))) for r in records]
    assert items == EXPECTED_JSON_RESULTS
    assert record_to_json(records[0], result_columns(CLASSES))["label"] == "=notumor"  # not neutralised


def test_damaged_rows_give_no_record():
    columns = result_columns(CLASSES)
    good = record_to_csv_row(FrameRecord.from_result(results()[1], CLASSES, "gradcam"), columns)
    assert record_from_csv_row(good, CLASSES) is not None
    assert record_from_csv_row({**good, "status": "maybe"}, CLASSES) is None
    assert record_from_csv_row({**good, "frame": "'-1"}, CLASSES) is None
    assert record_from_csv_row({**good, "p_glioma": "high"}, CLASSES) is None
    assert record_from_csv_row({**good, "width": None}, CLASSES) is None  # a short row
    assert record_from_csv_row({**good, None: ["extra"]}, CLASSES) is None  # a long row
    assert record_from_csv_row({k: v for k, v in good.items() if k != "cam_method"}, CLASSES) is None


def test_read_records_skips_damaged_rows(tmp_path):
    with ResultsStore(tmp_path, CLASSES) as store:
        for result in results():
            store.append(result, "gradcam")
    with open(tmp_path / RESULTS_CSV, "a", encoding="utf-8", newline="") as stream:
        stream.write("/data/x.png,zero,ok\r\n")
    records = list(read_records(tmp_path / RESULTS_CSV, CLASSES))
    assert [r.path.name for r in records] == [ODD_PATH.name, "s1.dcm", "broken.jpg", "-rel.png"]


def test_series_summary_is_built_from_records():
    slices = [
        FrameRecord(Path(f"/s/IM{i}"), 0, "ok", label=label, tumour_probability=p, series_uid="1.2", series_index=i,
                    series_length=4)
        for i, (label, p) in enumerate([("glioma", 0.4), ("notumor", 0.9), ("glioma", math.nan)])
    ]
    failed = FrameRecord(Path("/s/IM3"), 0, "error", error="cut short", series_uid="1.2", series_index=3)
    raster = FrameRecord(Path("/p.jpg"), 0, "ok", label="glioma", tumour_probability=1.0)
    (entry,) = summarize_series([*slices, failed, raster], CLASSES)
    assert (entry.series_uid, entry.slices, entry.ok, entry.errors) == ("1.2", 4, 3, 1)
    assert entry.labels == {"glioma": 2, "notumor": 1}
    assert entry.most_suspicious is slices[1] and entry.max_tumour_probability == 0.9
    assert entry.to_dict()["most_suspicious_path"] == "/s/IM1" and entry.to_dict()["most_suspicious_index"] == 1
    assert entry.tumour_probability_of == "1 - p(notumor)"


def test_every_spelling_of_a_file_has_one_frame_key(tmp_path, monkeypatch):
    target = tmp_path / "scan.png"
    target.write_bytes(b"")
    (tmp_path / "link.png").symlink_to(target)
    monkeypatch.chdir(tmp_path)
    key = frame_key(target, 2)
    assert key == (os.path.realpath(target), 2)
    assert frame_key("scan.png", 2) == frame_key("./link.png", "2") == key
    assert frame_key("scan.png", 2, origin=tmp_path / "elsewhere") != key
    assert frame_key("../scan.png", 2, origin=tmp_path / "elsewhere") == key


@pytest.mark.parametrize("rows", [0, 1])
def test_the_store_yields_records_once_per_frame(tmp_path, rows):
    """A frame written twice (an older version keyed rows by spelling) is one record."""
    with ResultsStore(tmp_path, CLASSES) as store:
        result = results()[1]
        for _ in range(1 + rows):
            store.append(result, "gradcam")
        records = list(store.records())
    assert len(records) == 1 and records[0].series_uid == "1.2.3" and records[0].probability("glioma") == 0.9
