"""The Markdown page of an evaluation (``report.md``): summary, per class, confusion matrix,
calibration, training curves, the most confident mistakes, Grad-CAM examples, provenance, caveats.

:func:`report_markdown` joins one function per section; each returns its lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from brainscan.engine.model.contract import ModelContract

Link = Callable[[str, str], list[str]]


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _summary(metrics: dict[str, Any], contract: ModelContract) -> list[str]:
    calibration, roc = metrics["calibration"], metrics["roc_auc"]
    lines = [
        f"# Evaluation of {contract.name} {contract.version} ({contract.architecture})",
        "",
        "Research software, not a diagnosis. "
        f"Scored with {metrics['model']} on the **{metrics['split']}** split: {metrics['split_description']}.",
        "",
    ]
    lines += [f"> **Warning:** {w}" for w in metrics["warnings"]] + ([""] if metrics["warnings"] else [])
    lines += [
        "## Summary",
        "",
        "| pictures | accuracy | macro F1 | weighted F1 | ROC AUC (macro, one-vs-rest) | ECE before → after | T |",
        "|---|---|---|---|---|---|---|",
        f"| {metrics['images']} | {_f(metrics['accuracy'])} | {_f(metrics['macro_f1'])} | "
        f"{_f(metrics['weighted_f1'])} | {_f(roc['macro'])} | {_f(calibration['before']['ece'])} → "
        f"{_f(calibration['after']['ece'])} | {_f(calibration['temperature'], 3)} |",
        "",
    ]
    return lines


def _per_class(metrics: dict[str, Any], classes: list[str], link: Link) -> list[str]:
    roc = metrics["roc_auc"]
    lines = [
        "## Per class",
        "",
        "| class | precision | recall | F1 | ROC AUC | support |",
        "|---|---|---|---|---|---|",
    ]
    for name in classes:
        row = metrics["per_class"][name]
        lines.append(
            f"| {name} | {_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | "
            f"{_f(roc['per_class'][name])} | {row['support']} |"
        )
    if "tumour_vs_notumor" in roc:
        lines += ["", f"Any tumour against no tumour (1 − p(notumor)): ROC AUC {_f(roc['tumour_vs_notumor'])}."]
    lines += ["", "## Confusion matrix", "", "Rows: true class; columns: predicted class.", "",
              "| true \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return [*lines, "", *link("confusion", "confusion matrix"), *link("roc", "ROC curves")]


def _calibration(calibration: dict[str, Any], link: Link) -> list[str]:
    before, after = calibration["before"], calibration["after"]
    lines = [
        "## Calibration",
        "",
        f"{calibration['method'][0].upper()}{calibration['method'][1:]}; T = {_f(calibration['temperature'])} "
        f"({'over-confident: T > 1 softens' if calibration['temperature'] > 1 else 'under-confident: T < 1 sharpens'}). "
        f"ECE over {calibration.get('ece_bins', 15)} equal-width confidence bins.",
        "",
        "| | ECE | NLL | Brier | mean confidence | accuracy |",
        "|---|---|---|---|---|---|",
        f"| before (T = 1) | {_f(before['ece'])} | {_f(before['nll'])} | {_f(before['brier'])} | "
        f"{_f(before['mean_confidence'])} | {_f(before['accuracy'])} |",
        f"| after (T = {_f(calibration['temperature'], 3)}) | {_f(after['ece'])} | {_f(after['nll'])} | "
        f"{_f(after['brier'])} | {_f(after['mean_confidence'])} | {_f(after['accuracy'])} |",
    ]
    cross = calibration.get("after_cross_fitted")
    if cross:
        lines.append(
            f"| after, cross-fitted (T = {', '.join(_f(t, 3) for t in cross['temperatures'])}) | {_f(cross['ece'])} | "
            f"{_f(cross['nll'])} | {_f(cross['brier'])} | | |"
        )
        lines += ["", f"Cross-fitted: {cross['method']}; the honest estimate of the calibrated figures."]
    return [*lines, "", *link("reliability", "reliability diagram")]


def _training_curves(history: list[dict[str, Any]] | None, training: dict[str, Any], link: Link) -> list[str]:
    lines = ["## Training curves", ""]
    if history:
        lines += [
            "| epoch | train loss | train acc | val loss | val acc | images/s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['epoch']} | {_f(r.get('train_loss'))} | {_f(r.get('train_accuracy'))} | {_f(r.get('val_loss'))} | "
            f"{_f(r.get('val_accuracy'))} | {r.get('images_per_s')} |"
            for r in history
        ]
        return [*lines, "", *link("curves", "training curves")]
    stage2 = training.get("stages", {}).get("stage2", {})
    return [
        *lines,
        "No per-epoch history was recorded for this run (it predates `history.json`). "
        + (f"Stage 2 ran {stage2.get('steps')} steps, loss {stage2.get('first_loss')} → {stage2.get('last_loss')}, "
           f"training accuracy {stage2.get('train_accuracy')}." if "steps" in stage2 else ""),
        "",
    ]


def _gradcams(metrics: dict[str, Any], link: Link) -> list[str]:
    lines = [
        "## Most confident mistakes",
        "",
        f"Each: the picture, the {metrics['cam_method']} of the predicted class (with its probability) and of the "
        "true class. Near-duplicate groups and label noise in the public set are worth checking here.",
        "",
    ]
    lines += link("mistakes", "most confident mistakes with Grad-CAM")
    if metrics["most_confident_mistakes"]:
        lines += ["| file | true | predicted | confidence | p(true) |", "|---|---|---|---|---|"]
        lines += [
            f"| `{m['file']}` | {m['true']} | {m['predicted']} | {_f(m['confidence'])} | {_f(m['p_true'])} |"
            for m in metrics["most_confident_mistakes"]
        ]
        lines.append("")
    else:
        lines += ["No mistakes.", ""]
    lines += ["## Grad-CAM examples per class", "",
              "Correctly classified pictures chosen at random (seed 0), with the CAM of their class.", ""]
    return lines + link("examples", "Grad-CAM per class")


def _provenance(metrics: dict[str, Any], contract: ModelContract) -> list[str]:
    training = contract.training
    return [
        "## Provenance",
        "",
        f"- training command: `{training.get('command', '?')}`",
        f"- data fingerprint: `{training.get('data_fingerprint', '?')}`; weights: {training.get('weights', '?')}",
        f"- scoring: {metrics['scoring']['images_per_s']} images/s on {metrics['machine']['processor']} "
        f"({metrics['machine']['torch_threads']} threads); report written in {metrics['seconds']} s",
        "",
        "## Caveats",
        "",
        "- " + str(contract.metrics.get("validation", {}).get("caveat", "")),
        "- Grad-CAM shows where the evidence for a class lies in the last feature maps (7 × 7 for a 224 input); "
        "it is coarse and is not a segmentation.",
        "",
    ]


def _interval(values: list[float]) -> str:
    return f"{_f(values[0], 3)}–{_f(values[1], 3)}"


def binary_section(binary: dict[str, Any]) -> list[str]:
    """Tumour against no tumour: counts, sensitivity, specificity, balanced accuracy, ROC AUC."""
    counts = binary["counts"]
    lines = [
        "## Tumour against no tumour",
        "",
        f"Decision: {binary['decision']}; score for the ROC AUC: {binary['score']}. Intervals: {binary['interval']}.",
        "",
        "| pictures | TP | FN | TN | FP | sensitivity (95 % CI) | specificity (95 % CI) | balanced accuracy | ROC AUC |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {binary['images']} | {counts['tp']} | {counts['fn']} | {counts['tn']} | {counts['fp']} | "
        f"{_f(binary['sensitivity'])} ({_interval(binary['sensitivity_ci95'])}) | {_f(binary['specificity'])} "
        f"({_interval(binary['specificity_ci95'])}) | {_f(binary['balanced_accuracy'])} | {_f(binary['roc_auc'])} |",
        "",
    ]
    predicted = binary.get("predicted_classes")
    if predicted:
        classes = list(next(iter(predicted.values())))
        lines += ["Predicted classes:", "", "| true \\ predicted | " + " | ".join(classes) + " |",
                  "|---|" + "---|" * len(classes)]
        lines += [f"| **{kind}** | " + " | ".join(str(row[c]) for c in classes) + " |" for kind, row in predicted.items()]
        lines.append("")
    missed = binary.get("most_confident_missed_tumours")
    if missed:
        lines += ["Most confident missed tumours:", "", "| file | p(notumor) |", "|---|---|"]
        lines += [f"| `{m['file']}` | {_f(m['p_notumor'])} |" for m in missed]
        lines.append("")
    return lines


def binary_report_markdown(metrics: dict[str, Any], contract: ModelContract) -> str:
    """The report page of a multi-class model scored on a tumour yes/no set."""
    lines = [
        f"# External evaluation of {contract.name} {contract.version} ({contract.architecture})",
        "",
        "Research software, not a diagnosis. "
        f"Scored with {metrics['model']} on **{metrics['split']}** data: {metrics['split_description']}. "
        "The folders say only tumour or no tumour, so the per-class sections of a full report do not apply.",
        "",
    ]
    lines += [f"> **Warning:** {w}" for w in metrics["warnings"]] + ([""] if metrics["warnings"] else [])
    return "\n".join([*lines, *binary_section(metrics["binary"]), *_provenance(metrics, contract)])


def report_markdown(
    metrics: dict[str, Any], contract: ModelContract, history: list[dict[str, Any]] | None,
    figures: dict[str, Path], out_dir: Path,
) -> str:
    """The report page; ``figures`` (key to PNG under ``out_dir``) are linked where they exist."""

    def link(key: str, alt: str) -> list[str]:
        if key not in figures:
            return []
        return [f"![{alt}]({figures[key].relative_to(out_dir).as_posix()})", ""]

    lines = [
        *_summary(metrics, contract),
        *_per_class(metrics, list(contract.classes), link),
        *_calibration(metrics["calibration"], link),
        *_training_curves(history, contract.training, link),
        *_gradcams(metrics, link),
        *_provenance(metrics, contract),
    ]
    return "\n".join(lines)
