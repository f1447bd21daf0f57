"""Searching an archive (QIDO-RS): studies by patient, date range, modality and description; a study's series."""

from __future__ import annotations

import pydicom
import pytest

from brainscan.engine.archive import ArchiveError, StudyQuery
from brainscan.engine.archive.credentials import Credentials
from brainscan.engine.archive.dicomweb import DicomWebArchive, session_for, session_with


@pytest.fixture
def archive(orthanc) -> DicomWebArchive:
    user, password = orthanc.auth
    return DicomWebArchive(orthanc.dicomweb, session_for(
        orthanc.dicomweb, {"BRAINSCAN_ARCHIVE_USER": user, "BRAINSCAN_ARCHIVE_PASSWORD": password}))


@pytest.fixture(scope="module")
def tags(orthanc) -> pydicom.Dataset:
    return pydicom.dcmread(orthanc.files[0], stop_before_pixels=True)


def _iso(date: str) -> str:
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"


def test_a_study_is_found_by_patient_name_id_date_range_modality_and_description(archive, orthanc, tags):
    name, patient_id, date = str(tags.PatientName), str(tags.PatientID), str(tags.StudyDate)
    description = str(tags.get("StudyDescription", ""))
    queries = [
        StudyQuery(patient_name=name[:3].lower()),  # a prefix, case ignored
        StudyQuery(patient_id=patient_id),
        StudyQuery(date_from=_iso(date), date_to=date),
        StudyQuery(date_from=date),
        StudyQuery(date_to=_iso(date)),
        StudyQuery(modality="mr", patient_name=name),
        StudyQuery(),
    ]
    if description:
        queries.append(StudyQuery(description=description[2:6]))  # anywhere in the description
    for query in queries:
        (study,) = archive.search_studies(query)
        assert study.study_uid == orthanc.study_uid, query
    assert study.date == date and study.description == description
    assert study.patient_name == name and study.patient_id == patient_id
    assert "MR" in study.modalities.split(", ")
    assert (study.series_count, study.instance_count) == (1, 16)
    assert name not in repr(study) and patient_id not in repr(study)  # a log line never carries them

    for query in (StudyQuery(patient_name="Nobody-Here"), StudyQuery(patient_id=patient_id + "x"),
                  StudyQuery(date_to="1990-01-01"), StudyQuery(modality="CT"),
                  StudyQuery(description="no such description")):
        assert archive.search_studies(query) == [], query


def test_the_series_of_a_study_with_their_counts(archive, orthanc, tags):
    (series,) = archive.find_series(orthanc.study_uid)
    assert series.series_uid == orthanc.series_uid and series.study_uid == orthanc.study_uid
    assert series.instance_count == 16
    assert series.modality == "MR"
    assert series.number == str(tags.get("SeriesNumber", ""))
    assert series.description == str(tags.get("SeriesDescription", ""))
    assert archive.find_series("1.2.3.4.5.6.7.8.9") == []


def test_query_keys_follow_qido_rs():
    assert StudyQuery().matches() == {}
    keys = StudyQuery(patient_id=" 123 ", patient_name="Doe", date_from="2024-01-02", modality="mr",
                      description="brain").matches()
    assert keys == {"PatientID": "123", "PatientName": "Doe*", "StudyDate": "20240102-",
                    "ModalitiesInStudy": "MR", "StudyDescription": "*brain*"}
    assert StudyQuery(patient_name="D?e^*").matches()["PatientName"] == "D?e^*"  # the user's own wildcards
    assert StudyQuery(date_to="20241231").matches()["StudyDate"] == "-20241231"
    assert StudyQuery(date_from="20240101", date_to="2024-01-01").matches()["StudyDate"] == "20240101"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        StudyQuery(date_from="yesterday").matches()
    with pytest.raises(ValueError, match="ends before it starts"):
        StudyQuery(date_from="2024-02-01", date_to="2024-01-01").matches()


def test_a_search_refused_for_want_of_credentials_names_the_variables(orthanc):
    archive = DicomWebArchive(orthanc.dicomweb, session_with(Credentials()))
    with pytest.raises(ArchiveError, match="401.*BRAINSCAN_ARCHIVE_USER"):
        archive.search_studies(StudyQuery())
