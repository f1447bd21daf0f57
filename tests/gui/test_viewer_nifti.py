"""The viewer opens a NIfTI file through its normal Open path: discovery makes it one series of its slices."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("nibabel")

from nifti_volumes import SHARED_SAGITTAL, sagittal_volume, write_nifti
from viewer_helpers import open_and_show

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not SHARED_SAGITTAL.is_dir(), reason="../shared/data/dicom/sagittal-t1-brain is absent"),
]


def test_a_nifti_opens_as_one_series_whose_slice_is_shown_with_its_geometry(qtbot, window, tmp_path):
    volume = sagittal_volume()
    path = write_nifti(tmp_path / "sagittal.nii", volume)
    open_and_show(qtbot, window, [path])
    session = window.controller.session
    (group,) = session.groups
    assert group.kind == "series" and len(group) == 16 and session.position_text() == "slice 1/16"
    assert group.name == "sagittal.nii"
    browser = window.browser.browser_model
    assert browser.rowCount() == 1 and browser.item(0).rowCount() == 16
    image = window.view.slice_item.image
    assert image.dtype.name == "float32" and image.shape == (256, 256)  # the float slice: window/level works
    np.testing.assert_array_equal(image, volume.voxels[0])
    assert window.tags_panel.value("Format") == "NIfTI (.nii)"
    assert window.tags_panel.value("PixelSpacing") == "0.859375\\0.859375"
