"""Archives: finding, retrieving and storing DICOM instances on a PACS or a vendor-neutral archive.

:mod:`~brainscan.engine.archive.access` holds what every protocol offers (:class:`Archive`, the
typed :class:`ArchiveError`, the URL grammar); :mod:`~brainscan.engine.archive.dicomweb` implements
it over DICOMweb (QIDO-RS, WADO-RS, STOW-RS). A DIMSE implementation (C-FIND, C-MOVE/C-GET, C-STORE)
would sit beside it behind the same protocol. Nothing here imports Qt or torch.
"""

from __future__ import annotations

from brainscan.engine.archive.access import (
    Archive,
    ArchiveError,
    ArchiveLocation,
    Instance,
    Retrieval,
    Series,
    StoreOutcome,
    Study,
    StudyQuery,
    is_archive_url,
    parse_archive_url,
)

__all__ = ["Archive", "ArchiveError", "ArchiveLocation", "Instance", "Retrieval", "Series", "StoreOutcome", "Study",
           "StudyQuery", "is_archive_url", "parse_archive_url"]
