"""Class names for people: ``notumor`` reads "No tumour". Only what is shown changes; the raw names stay in
results.csv and results.json, the command line's machine-readable outputs and every filter."""

from __future__ import annotations

CLASS_DISPLAY_NAMES = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary",
    "out_of_domain": "Out of domain",
}


def display_name(label: str) -> str:
    """``label`` as the viewer and the reports show it; an unknown name is title-cased ("" stays "")."""
    if label in CLASS_DISPLAY_NAMES:
        return CLASS_DISPLAY_NAMES[label]
    return label.replace("_", " ").strip().title()


def display_text(text: str, label: str) -> str:
    """``text`` with its leading raw ``label`` ("notumor: 12 of 16 ...") shown by its display name."""
    if label and text.startswith(f"{label}:"):
        return display_name(label) + text[len(label):]
    return text
