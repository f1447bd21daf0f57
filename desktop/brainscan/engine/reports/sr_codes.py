"""Coded concepts for the Structured Report: one finding code per model class.

Choices (checked against public terminology listings; the code table lives here alone):

- meningioma: SCT 302820008 "Intracranial meningioma" (a disorder concept).
- pituitary: SCT 254956000 "Pituitary adenoma" (the Kaggle "pituitary tumor" class is mostly
  adenomas; the Human Phenotype Ontology cross-references this code for pituitary adenoma).
- no tumour: SCT 281900007 "No abnormality detected" (a finding concept, used in HL7 value sets).
- glioma: a local code (coding scheme ``99BRAINSCAN``). SCT 393563007, sometimes given for glioma,
  is listed as "Glioblastoma multiforme (disorder)" in several terminology mappings (mCODE, TCGA),
  which would overstate what the model tells apart; no glioma code could be verified here.
- any other class name (e.g. a binary "tumour" class): a local ``99BRAINSCAN`` code with the class name.

Probabilities are numeric measurements with local concept names ("Probability of <class>") and
UCUM unit "1" (no units). The finding site is SCT 12738006 "Brain", the procedure LOINC 24590-2
"Brain MRI", the evaluation's concept name DCM 121071 "Finding".
"""

from __future__ import annotations

LOCAL_SCHEME = "99BRAINSCAN"
LOCAL_SCHEME_NAME = "brainscan local codes (model classes and class probabilities)"

_KNOWN = {
    "meningioma": ("302820008", "SCT", "Intracranial meningioma"),
    "pituitary": ("254956000", "SCT", "Pituitary adenoma"),
    "none": ("281900007", "SCT", "No abnormality detected"),
}
_NEGATIVE = {"notumor", "notumour", "no", "healthy", "normal", "none"}


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def local_code(name: str) -> tuple[str, str, str]:
    value = _normal(name)[:16] or "class"
    return (value.upper(), LOCAL_SCHEME, name[:64])


def finding_code(class_name: str) -> tuple[str, str, str]:
    """``(code value, coding scheme designator, code meaning)`` of a model class."""
    key = _normal(class_name)
    if key in _NEGATIVE:
        return _KNOWN["none"]
    if "mening" in key:
        return _KNOWN["meningioma"]
    if "pituitar" in key:
        return _KNOWN["pituitary"]
    if "glioma" in key:
        return ("GLIOMA", LOCAL_SCHEME, "Glioma")
    return local_code(class_name)


def probability_code(class_name: str) -> tuple[str, str, str]:
    return (f"P-{_normal(class_name)[:14].upper() or 'CLASS'}", LOCAL_SCHEME, f"Probability of {class_name}"[:64])
