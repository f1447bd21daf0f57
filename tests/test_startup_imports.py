"""Start-up imports only what is used: a run over pictures never loads pydicom (issue 14).

pydicom (with its decoder plugins, Pillow and GDCM) was about half of ``import brainscan.cli``; it is
now imported where a DICOM file is met. The check runs in a fresh interpreter, as ``brainscan screen``
does; that DICOM still screens is covered by test_cli_dicom.py and test_loading.py.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from brainscan.engine.resources import default_model_path

KAGGLE_GLIOMA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain-tumor-mri" / "Training" / "glioma"
DICOM_ONLY = ("pydicom", "highdicom")

CHILD = """
import json, sys
from brainscan.cli import main
code = main(["screen", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_screening_one_jpg_never_imports_pydicom(tmp_path):
    pictures = sorted(KAGGLE_GLIOMA.glob("*.jpg"))[:1]
    if not pictures:
        pytest.skip(f"the Kaggle training images are not on this machine ({KAGGLE_GLIOMA})")
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    out = tmp_path / "out"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(pictures[0]), str(out)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    modules = report["modules"]
    print("modules imported by the child:", " ".join(modules))
    assert report["code"] == 0
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and not rows[0].get("error")
    loaded = sorted(name for name in modules if name.split(".")[0] in DICOM_ONLY)
    assert not loaded, f"a run over one JPG imported {loaded[:10]}"


def test_importing_pydicom_late_keeps_the_level_given_to_its_logger():
    """``brainscan screen`` silences pydicom's logger before any DICOM is met; pydicom, imported later,
    would set it back to WARNING."""
    child = subprocess.run(
        [sys.executable, "-c", (
            "import logging, sys\n"
            "logging.getLogger('pydicom').setLevel(logging.CRITICAL)\n"
            "from brainscan.engine.input.dicom_header import import_pydicom\n"
            "assert 'pydicom' not in sys.modules\n"
            "import_pydicom()\n"
            "print(logging.getLogger('pydicom').level, 'pydicom' in sys.modules)\n"
        )],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [str(logging.CRITICAL), "True"]


def test_a_second_jpg_run_imports_no_dicom_report_or_onnx_module(tmp_path):
    """Issue 14's start-up: a run over a JPG imports neither the DICOM nor the report libraries, and once the
    model's checksum is remembered (the first run) not the onnx package either, nor tqdm without a bar."""
    pictures = sorted(KAGGLE_GLIOMA.glob("*.jpg"))[:1]
    if not pictures:
        pytest.skip(f"the Kaggle training images are not on this machine ({KAGGLE_GLIOMA})")
    if not default_model_path().is_file():
        pytest.skip("the shipped model is not in this checkout")
    reports = []
    for run in ("first", "second"):
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(pictures[0]), str(tmp_path / run)],
            capture_output=True, text=True, timeout=180, check=False,
        )
        assert child.returncode == 0, child.stderr
        reports.append(json.loads(child.stdout.strip().splitlines()[-1]))
    assert [report["code"] for report in reports] == [0, 0]
    tops = {name.split(".")[0] for name in reports[1]["modules"]}
    unwanted = {"pydicom", "highdicom", "reportlab", "PIL", "onnx", "tqdm", "keyring", "nibabel"} & tops
    assert not unwanted, f"the second run over one JPG imported {sorted(unwanted)}"
    builders = [name for name in reports[1]["modules"] if name.startswith(("brainscan.engine.reports.session",
                                                                             "brainscan.engine.reports.content"))]
    assert not builders, f"a run without --report imported the report builders {builders}"
