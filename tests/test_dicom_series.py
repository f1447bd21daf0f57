"""Series grouping and slice order: position along the normal, then Instance Number, then file name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import dicom_factory as factory
from brainscan.engine.input import dicom_series as ds_
from brainscan.engine.input.dicom_series import SliceHeader

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def header(
    name: str, *, z: float | None = None, instance: int | None = None, uid: str = "1.2.3", **kw
) -> SliceHeader:
    position = (3.0, -7.0, z) if z is not None else None
    orientation = kw.pop("orientation", AXIAL if z is not None else None)
    return SliceHeader(
        Path(name), series_uid=uid, instance_number=instance, position=position, orientation=orientation, **kw
    )


@pytest.mark.parametrize(
    ("orientation", "normal"),
    [(AXIAL, (0, 0, 1)), (SAGITTAL, (-1, 0, 0)), (CORONAL, (0, 1, 0))],
    ids=["axial", "sagittal", "coronal"],
)
def test_slice_normal_is_row_cross_column(orientation: tuple[float, ...], normal: tuple[int, ...]) -> None:
    np.testing.assert_allclose(ds_.slice_normal(orientation), normal, atol=1e-12)


def test_position_wins_over_instance_numbers_and_names_that_disagree() -> None:
    headers = [
        header("IM1", z=30.0, instance=1),
        header("IM2", z=-10.0, instance=2),
        header("IM3", z=10.0, instance=3),
        header("IM4", z=0.0, instance=4),
    ]
    ordered, method = ds_.sort_series(headers)
    assert method == "position"
    assert [h.path.name for h in ordered] == ["IM2", "IM4", "IM3", "IM1"]


def test_position_is_measured_along_an_oblique_normal_not_along_z() -> None:
    row, column, normal = factory.oblique_frame(np.array([0.3, 0.2, 0.93]))
    orientation = tuple(float(v) for v in (*row, *column))
    headers = []
    for name, step, shift in (("a", 2, -40.0), ("b", 0, 30.0), ("c", 1, 0.0)):
        # large in-plane shifts change z more than the step along the normal does
        position = tuple(float(v) for v in step * 1.0 * normal + shift * column)
        headers.append(SliceHeader(Path(name), series_uid="1", position=position, orientation=orientation))
    ordered, method = ds_.sort_series(headers)
    assert method == "position"
    assert [h.path.name for h in ordered] == ["b", "c", "a"]
    by_z = sorted(headers, key=lambda h: h.position[2])
    assert [h.path.name for h in by_z] == ["a", "c", "b"]  # z alone would get it backwards


def test_equal_positions_are_ordered_by_instance_number() -> None:
    ordered, _ = ds_.sort_series([header("x", z=5.0, instance=2), header("y", z=5.0, instance=1)])
    assert [h.path.name for h in ordered] == ["y", "x"]


def test_falls_back_to_instance_number_when_a_slice_has_no_position() -> None:
    headers = [header("IM1", z=1.0, instance=3), header("IM2", instance=1), header("IM3", z=3.0, instance=2)]
    ordered, method = ds_.sort_series(headers)
    assert method == "instance"
    assert [h.instance_number for h in ordered] == [1, 2, 3]


def test_falls_back_to_instance_number_when_orientations_differ() -> None:
    headers = [
        header("a", z=0.0, instance=2, orientation=AXIAL),
        header("b", z=5.0, instance=1, orientation=SAGITTAL),
    ]
    ordered, method = ds_.sort_series(headers)
    assert method == "instance" and [h.path.name for h in ordered] == ["b", "a"]


def test_falls_back_to_natural_file_name_order_without_geometry_or_numbers() -> None:
    headers = [header("IM10"), header("IM2"), header("IM1")]
    ordered, method = ds_.sort_series(headers)
    assert method == "name"
    assert [h.path.name for h in ordered] == ["IM1", "IM2", "IM10"]


def test_series_are_grouped_by_uid_in_the_order_first_seen() -> None:
    headers = [
        header("b1", uid="B", z=1.0),
        header("a1", uid="A", z=2.0),
        header("b0", uid="B", z=0.0),
        header("lone1", uid=""),
        header("lone2", uid=""),
    ]
    groups = ds_.group_by_series(headers)
    assert list(groups)[:2] == ["B", "A"]
    assert len(groups) == 4  # files without a Series Instance UID are not lumped together
    arranged = ds_.arrange_series(headers)
    assert [[h.path.name for h in series] for series in arranged] == [
        ["b0", "b1"],
        ["a1"],
        ["lone1"],
        ["lone2"],
    ]


def test_enhanced_multiframe_positions_come_from_the_per_frame_groups() -> None:
    ds = Dataset()
    ds.SeriesInstanceUID = "9.8.7"
    ds.NumberOfFrames = 3
    per_frame = []
    for z in (20.0, 0.0, 10.0):
        position = Dataset()
        position.ImagePositionPatient = [0.0, 0.0, z]
        item = Dataset()
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    orientation = Dataset()
    orientation.ImageOrientationPatient = list(AXIAL)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    headers = ds_.headers_from_dataset(ds, "enhanced.dcm")
    assert [h.frame for h in headers] == [0, 1, 2] and all(h.frames == 3 for h in headers)
    ordered, method = ds_.sort_series(headers)
    assert method == "position" and [h.frame for h in ordered] == [1, 2, 0]


def test_synthetic_sagittal_files_sort_into_their_true_order(
    synthetic_sagittal: factory.SagittalSeries,
) -> None:
    files = sorted(synthetic_sagittal.folder.iterdir())
    headers = [h for f in files for h in ds_.headers_from_dataset(ds_.read_header(f), f)]
    ordered, method = ds_.sort_series(headers)
    assert method == "position"
    assert [h.path for h in ordered] == synthetic_sagittal.files_in_order
    # the names and the instance numbers really do mislead
    assert files != synthetic_sagittal.files_in_order
    by_instance = [h.path for h in sorted(headers, key=lambda h: h.instance_number)]
    assert by_instance != synthetic_sagittal.files_in_order


def test_sagittal_series_is_evenly_spaced_along_its_normal_once_sorted(sagittal_series_dir: Path) -> None:
    files = [f for f in sorted(sagittal_series_dir.iterdir()) if f.is_file() and not f.name.startswith(".")]
    headers = []
    for f in files:
        try:
            headers += ds_.headers_from_dataset(ds_.read_header(f), f)
        except Exception:  # a licence file beside the real series
            continue
    assert len({h.series_uid for h in headers}) == 1 and len(headers) >= 16
    ordered, method = ds_.sort_series(headers)
    assert method == "position"
    normal = ds_.common_normal(ordered)
    steps = np.diff([ds_.slice_position(h, normal) for h in ordered])
    assert (steps > 0).all()
    np.testing.assert_allclose(steps, steps.mean(), rtol=0.02)
