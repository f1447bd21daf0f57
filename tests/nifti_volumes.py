"""Small NIfTI volumes written by the tests from the real shared DICOM series (never stored in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.volume import RAS_TO_LPS, Volume, volume_of_series

SHARED_SAGITTAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom" / "sagittal-t1-brain"


def sagittal_volume(folder: Path = SHARED_SAGITTAL) -> Volume:
    """The volume of the 16 shared sagittal slices."""
    return volume_of_series(discover([folder]))


def write_nifti(path: Path, volume: Volume, *, volumes: int = 1) -> Path:
    """``volume`` as a NIfTI-1 file (``.nii`` or ``.nii.gz`` by its name), int16 voxels (i, j, k) and the RAS
    affine, as dcm2niix would write it; ``volumes`` > 1 writes a 4-D file whose volume n holds the values + n."""
    import nibabel

    data = np.rint(volume.voxels.transpose(2, 1, 0)).astype(np.int16)  # (slice, row, col) -> (i, j, k)
    if volumes > 1:
        data = np.stack([data + n for n in range(volumes)], axis=-1)
    affine = RAS_TO_LPS @ volume.affine  # LPS -> RAS: the same negation both ways
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nibabel.save(image, path)
    return path
