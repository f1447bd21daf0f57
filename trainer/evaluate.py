"""Evaluation of a run (or an exported ONNX file) with one report per run.

``python -m trainer evaluate runs/<name>`` rebuilds the run's grouped validation split (or takes
its Testing split, or any other data), scores it and writes into ``runs/<name>/report/``:

- ``metrics.json``: accuracy, per-class precision/recall/F1, macro and weighted F1, confusion
  matrix, one-vs-rest ROC AUC per class, calibration (ECE, NLL, Brier before and after
  temperature scaling; on validation the temperature is fitted there, elsewhere the contract's
  temperature is applied), the most confident mistakes;
- PNGs: confusion matrix, ROC curves, reliability diagram, training curves, a gallery of the most
  confident mistakes with the Grad-CAMs of the predicted and the true class, and Grad-CAM
  examples per class;
- ``report.md``, which ties them together.

External data (``--data``) whose folders are tumour yes/no (``yes``/``no``, or any names mapped there by
``--alias FOLDER=CLASS``) scored by a model with a ``notumor`` class among several is judged as a screen:
tumour = 1 - p(notumor), decided at the model's argmax (tumour when the predicted class is not
``notumor``), with counts, sensitivity, specificity (95 % Wilson intervals), balanced accuracy and the
ROC AUC of the tumour probability (``metrics["binary"]``); the multi-class sections need class labels
and are left out.

On the validation split the fitted temperature is written into the run's contract
(``metrics["calibration"]["temperature"]``), so every later export carries it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainscan.engine.model.contract import ModelContract
from trainer import plots
from trainer.calibration import calibrate, calibration_scores, reliability, softmax
from trainer.config import FitConfig
from trainer.data import CLASSES_BINARY, is_tumour_yes_no
from trainer.device import Runtime, machine_info
from trainer.errors import TrainerError
from trainer.evaluation_report import binary_report_markdown, report_markdown
from trainer.metrics import binary_screening_metrics, classification_report, roc_auc_per_class
from trainer.prepared_data import Prepared, prepare_data, split_description
from trainer.refit import refuse_refit_on_held_out
from trainer.run_folder import load_checkpoint, read_history, update_contract
from trainer.scorers import OnnxScorer, Scorer, TorchScorer, cams, score

SPLITS = ("validation", "train", "test", "all")
GALLERY_TILE = 160


@dataclass
class Selection:
    """The pictures being evaluated and how they were chosen."""

    data: Prepared
    indices: np.ndarray
    split: str
    description: str
    binary: bool = False  # labels are CLASSES_BINARY (notumor, tumor), not the model's classes


def _screens_tumour(classes: tuple[str, ...]) -> bool:
    return "notumor" in classes and len(classes) > 2


def select_data(
    config: FitConfig, split: str, data_roots: list[str] | None, log: Any = print,
    aliases: dict[str, str] | None = None,
) -> Selection:
    """Rebuild the data for ``split`` of the run (or all of other ``data_roots``, their folder names mapped by
    ``aliases`` too; a tumour yes/no set scored by a model with ``notumor`` among its classes is labelled
    :data:`CLASSES_BINARY`)."""
    if data_roots:
        aliases = {**config.label_aliases, **(aliases or {})}
        binary = _screens_tumour(tuple(config.classes)) and is_tumour_yes_no(data_roots, aliases)
        task = {"task": "binary", "classes": CLASSES_BINARY} if binary else {}
        other = FitConfig.from_dict({**config.as_dict(), "data": tuple(data_roots), "limit": None,
                                     "label_aliases": aliases, **task})
        data = prepare_data(other, log, splits=("training", "testing", "validation", "unsplit"), split=False,
                            every_class=False)
        kind = " (a tumour yes/no set)" if binary else ""
        return Selection(data, data.val, "external", f"all {len(data.val)} readable pictures under "
                         + ", ".join(data_roots) + kind, binary)
    if split == "test":
        data = prepare_data(config, log, splits=("testing",), split=False)
        return Selection(data, data.val, split, f"the Testing split of the data roots ({len(data.val)} pictures)")
    if split not in SPLITS:
        raise TrainerError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if split == "validation" and config.val_fraction == 0.0:
        raise TrainerError(
            f"run {config.name} is a refit on every picture (val_fraction 0): it has no validation split. Its "
            f"contract carries the validation of {config.refit_of or 'its validated twin'}; score it on pictures it "
            "never saw instead (--split test on a Testing folder, or --data on an external set)"
        )
    data = prepare_data(config, log)
    indices = {"validation": data.val, "train": data.train, "all": np.arange(len(data.paths))}[split]
    text = split_description(data, config) if split == "validation" else f"the {split} pictures ({len(indices)})"
    return Selection(data, indices, split, text)


def restrict_to_ids(selection: Selection, ids_file: str | Path | None, exclude_ids: str | Path | None) -> Selection:
    """Keep the selected pictures whose id (file stem) is listed in ``ids_file`` and not in ``exclude_ids``."""
    from trainer.pointing import id_mask, read_ids

    only = read_ids(ids_file) if ids_file else None
    exclude = read_ids(exclude_ids) if exclude_ids else None
    keep = id_mask([selection.data.paths[i] for i in selection.indices], only, exclude)
    if not keep.any():
        raise TrainerError(f"none of the {len(keep)} selected pictures is left by the id lists given")
    lists = " and ".join(t for t in (f"listed in {ids_file}" if ids_file else "",
                                     f"not listed in {exclude_ids}" if exclude_ids else "") if t)
    return replace(selection, indices=selection.indices[keep],
                   description=f"{selection.description}; of them the {int(keep.sum())} whose ids are {lists}")


def _relative_name(path: Path, roots: tuple[Path, ...]) -> str:
    for root in roots:
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            continue
        return relative if len(roots) == 1 else f"{root.name}/{relative}"
    return str(path)


def _open_scorer(
    run_dir: Path | None, onnx: str | Path | None, device: str, threads: int
) -> tuple[Scorer, ModelContract, FitConfig]:
    """The scorer (the ONNX file when given, else the run's checkpoint), its contract and the run's config."""
    if onnx is not None:
        scorer: Scorer = OnnxScorer(onnx, threads)
        contract = scorer.contract
        raw = contract.training.get("config")
        if run_dir is not None:
            _, _, config = load_checkpoint(run_dir)
        elif raw:
            config = FitConfig.from_dict(raw).resolved()
        else:
            raise TrainerError(f"{onnx}: its contract has no training config; pass the run folder too")
    elif run_dir is not None:
        model, contract, config = load_checkpoint(run_dir)
        rt = Runtime.from_config(device, "auto", True)
        scorer = TorchScorer(model, contract, rt)
    else:
        raise TrainerError("give a run folder, an ONNX file (--onnx), or both")
    return scorer, contract, FitConfig.from_dict({**config.as_dict(), "threads": threads})


def _fingerprint_warnings(selection: Selection, contract: ModelContract) -> list[str]:
    trained_on = contract.training.get("data_fingerprint")
    fingerprint = selection.data.fingerprint
    if selection.split in ("validation", "train") and trained_on and trained_on != fingerprint:
        return [
            f"the data's fingerprint ({fingerprint}) differs from the one trained on ({trained_on}): "
            "the split may not be the training run's, so these figures may include trained-on pictures"
        ]
    return []


def _calibration(
    selection: Selection, logits: np.ndarray, labels: np.ndarray, contract: ModelContract
) -> dict[str, Any]:
    """Fitted on the validation split; elsewhere the contract's temperature applied."""
    if selection.split == "validation":
        return calibrate(logits, labels, selection.data.groups[selection.indices])
    temperature = float(contract.metrics.get("calibration", {}).get("temperature", 1.0))
    return {
        "temperature": temperature,
        "method": "the temperature fitted on the run's validation split, applied here"
        if "calibration" in contract.metrics else "no temperature in the contract: T = 1",
        "before": calibration_scores(logits, labels, 1.0),
        "after": calibration_scores(logits, labels, temperature),
    }


@dataclass
class Scored:
    """The selection's logits and what follows from them."""

    labels: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray
    names: list[str]  # the pictures' files, relative to their data roots
    seconds: float

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1)


def _score(scorer: Scorer, selection: Selection) -> Scored:
    prepared, indices = selection.data, selection.indices
    tic = time.perf_counter()
    logits = score(scorer, prepared.pictures, indices)
    seconds = time.perf_counter() - tic
    probabilities = softmax(logits)
    names = [_relative_name(prepared.paths[i], prepared.roots) for i in indices]
    return Scored(prepared.labels[indices], logits, probabilities, probabilities.argmax(1), names, seconds)


def _mistakes(
    scorer: Scorer, selection: Selection, scored: Scored, classes: tuple[str, ...], gallery: int, cam_method: str,
    out_dir: Path, figures: dict[str, Path],
) -> list[dict[str, Any]]:
    """The most confident mistakes, with the CAMs of the predicted and the true class (a PNG into ``figures``)."""
    labels, predictions, confidence = scored.labels, scored.predictions, scored.confidence
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:gallery]
    mistakes = [
        {
            "file": scored.names[k],
            "true": classes[labels[k]],
            "predicted": classes[predictions[k]],
            "confidence": round(float(confidence[k]), 4),
            "p_true": round(float(scored.probabilities[k, labels[k]]), 4),
        }
        for k in wrong
    ]
    if len(wrong):
        pictures = selection.data.pictures[selection.indices[wrong]]
        maps = cams(scorer, pictures, [[int(predictions[k]), int(labels[k])] for k in wrong], cam_method)
        rows = [
            [
                plots.tile(pictures[r], None, f"true {classes[labels[k]]}", GALLERY_TILE),
                plots.tile(pictures[r], maps[r][0], f"{classes[predictions[k]]} {confidence[k]:.2f}", GALLERY_TILE),
                plots.tile(pictures[r], maps[r][1], f"CAM {classes[labels[k]]}", GALLERY_TILE),
            ]
            for r, k in enumerate(wrong)
        ]
        pairs = [rows[i] + (rows[i + 1] if i + 1 < len(rows) else []) for i in range(0, len(rows), 2)]
        figures["mistakes"] = plots.write_png(out_dir / "mistakes_gradcam.png", plots.grid(pairs))
    return mistakes


def _examples(
    scorer: Scorer, selection: Selection, scored: Scored, classes: tuple[str, ...], examples: int, cam_method: str,
    out_dir: Path, figures: dict[str, Path],
) -> dict[str, list[str]]:
    """Grad-CAM examples per class: correctly classified pictures, chosen at random (seeded)."""
    labels, predictions, confidence = scored.labels, scored.predictions, scored.confidence
    rng = np.random.default_rng(0)
    example_rows, example_files = [], {}
    for c, name in enumerate(classes):
        right = np.flatnonzero((labels == c) & (predictions == c))
        chosen = np.sort(rng.choice(right, size=min(examples, len(right)), replace=False)) if len(right) else right
        if not len(chosen):
            continue
        pictures = selection.data.pictures[selection.indices[chosen]]
        maps = cams(scorer, pictures, [[c]] * len(chosen), cam_method)
        example_rows.append(
            [plots.tile(pictures[r], maps[r][0], f"{name} {confidence[k]:.2f}", GALLERY_TILE)
             for r, k in enumerate(chosen)]
        )
        example_files[name] = [scored.names[k] for k in chosen]
    if example_rows:
        figures["examples"] = plots.write_png(out_dir / "gradcam_per_class.png", plots.grid(example_rows))
    return example_files


def _figures(
    scored: Scored, report: dict[str, Any], roc: dict[str, Any], calibration: dict[str, Any],
    classes: tuple[str, ...], history: list[dict[str, Any]] | None, out_dir: Path,
) -> dict[str, Path]:
    """The confusion matrix, ROC curves, reliability diagram and (with a history) training curves."""
    labels, probabilities, temperature = scored.labels, scored.probabilities, calibration["temperature"]
    figures = {
        "confusion": plots.confusion_png(report["confusion_matrix"], classes, out_dir / "confusion_matrix.png"),
        "roc": plots.roc_png(labels, probabilities, classes, roc["per_class"], out_dir / "roc.png"),
        "reliability": plots.reliability_png(
            reliability(probabilities, labels), reliability(softmax(scored.logits, temperature), labels), temperature,
            calibration, out_dir / "reliability.png",
        ),
    }
    if history:
        figures["curves"] = plots.curves_png(history, out_dir / "training_curves.png")
    return figures


def _report_folder(out: str | Path | None, run_dir: Path | None, onnx: str | Path | None, split: str,
                   data: list[str] | None) -> Path:
    if out:
        return Path(out)
    name = "report" if split == "validation" and not data else f"report-{'external' if data else split}"
    return (run_dir or Path(onnx).parent) / name


def _header(
    scorer: Scorer, run_dir: Path | None, contract: ModelContract, selection: Selection, warnings: list[str]
) -> dict[str, Any]:
    """What every ``metrics.json`` starts with: the model, the run and the data scored."""
    return {
        "model": scorer.name,
        "run": run_dir.name if run_dir is not None else f"{contract.name} {contract.version}",
        "views_in_graph": list(contract.views_in_graph),
        "test_time_augmentation": list(contract.test_time_augmentation),
        "data_fingerprint": selection.data.fingerprint,
        "contract": {"name": contract.name, "version": contract.version, "architecture": contract.architecture},
        "split": selection.split,
        "split_description": selection.description,
        "warnings": warnings,
    }


def _write_temperature(
    run_dir: Path, contract: ModelContract, report: dict[str, Any], roc: dict[str, Any],
    calibration: dict[str, Any], log: Any,
) -> None:
    """Write the validation scores and the fitted temperature into the run's contract."""
    validation = dict(contract.metrics.get("validation", {}))
    validation.update(
        weighted_f1=report["weighted_f1"], roc_auc=roc, images=report["images"], accuracy=report["accuracy"]
    )
    calibrated = contract.with_updates(metrics={**contract.metrics, "validation": validation,
                                                "calibration": calibration})
    update_contract(run_dir, calibrated)
    log(f"temperature {calibration['temperature']:.4f} written into {run_dir}/contract.json and the checkpoint's "
        "contract")


def _binary_metrics(scored: Scored, classes: tuple[str, ...], gallery: int) -> dict[str, Any]:
    """The screening figures of a 4-class model on a tumour yes/no set, with what each kind was called."""
    negative = classes.index("notumor")
    tumour = scored.labels == CLASSES_BINARY.index("tumor")
    called = scored.predictions != negative
    binary = binary_screening_metrics(tumour, called, 1.0 - scored.probabilities[:, negative])
    binary["decision"] = "the model's argmax: tumour when the predicted class is not notumor"
    binary["score"] = "tumour probability 1 - p(notumor) (softmax, T = 1)"
    binary["predicted_classes"] = {
        kind: {name: int(((scored.predictions == c) & (tumour == is_tumour)).sum()) for c, name in enumerate(classes)}
        for kind, is_tumour in (("tumour", True), ("no tumour", False))
    }
    missed = np.flatnonzero(tumour & ~called)
    missed = missed[np.argsort(-scored.probabilities[missed, negative], kind="stable")][:gallery]
    binary["most_confident_missed_tumours"] = [
        {"file": scored.names[k], "p_notumor": round(float(scored.probabilities[k, negative]), 4)} for k in missed
    ]
    return binary


def _evaluate_binary(
    scorer: Scorer, selection: Selection, contract: ModelContract, out_dir: Path, header: dict[str, Any],
    gallery: int, started: float, log: Any,
) -> dict[str, Any]:
    """Score a tumour yes/no set with a multi-class model; write ``metrics.json`` and ``report.md``."""
    scored = _score(scorer, selection)
    binary = _binary_metrics(scored, tuple(contract.classes), gallery)
    log(
        f"{selection.split} (tumour yes/no): {binary['images']} pictures, sensitivity {binary['sensitivity']:.4f}, "
        f"specificity {binary['specificity']:.4f}, balanced accuracy {binary['balanced_accuracy']:.4f}, "
        f"ROC AUC {binary['roc_auc']:.4f} ({binary['counts']})"
    )
    metrics = {
        **header,
        "images": binary["images"],
        "binary": binary,
        **_run_facts(scored.seconds, len(selection.indices), started),
    }
    _write_report(out_dir, metrics, binary_report_markdown(metrics, contract), log)
    return metrics


def evaluate(
    run: str | Path | None = None,
    *,
    onnx: str | Path | None = None,
    split: str = "validation",
    data: list[str] | None = None,
    aliases: dict[str, str] | None = None,
    out: str | Path | None = None,
    update: bool = True,
    gallery: int = 12,
    examples: int = 4,
    cam_method: str = "gradcam",
    device: str = "auto",
    threads: int = 2,
    boxes: str | Path | None = None,
    ids_file: str | Path | None = None,
    exclude_ids: str | Path | None = None,
    pointing_gallery: int = 3,
    log: Any = print,
) -> dict[str, Any]:
    """Score a run's checkpoint (or an ONNX file) and write the report; returns the metrics.

    ``boxes``: a folder of tumour box files (``ID.txt``, YOLO style; beside the pictures or in a tree mirroring
    them): the heat maps of the pictures that have one are measured by the pointing game on the engine's path
    (needs ``onnx``; :mod:`trainer.pointing`). ``ids_file`` / ``exclude_ids``: evaluate only the pictures whose
    ids (file stems) are listed in one and not in the other, one a line."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    run_dir = Path(run) if run is not None else None
    if run_dir is not None and run_dir.is_file():
        run_dir = run_dir.parent
    if boxes is not None and onnx is None:
        raise TrainerError("the pointing game (--boxes) measures the heat maps the application computes: give the "
                           "exported model with --onnx")
    scorer, contract, config = _open_scorer(run_dir, onnx, device, threads)
    history = read_history(run_dir) if run_dir is not None else None
    out_dir = _report_folder(out, run_dir, onnx, split, data)
    out_dir.mkdir(parents=True, exist_ok=True)

    if onnx is not None and split == "validation" and not data:
        refuse_refit_on_held_out(contract.metrics, str(onnx))
    selection = select_data(config, split, data, log, aliases)
    if ids_file or exclude_ids:
        selection = restrict_to_ids(selection, ids_file, exclude_ids)
        log(selection.description)
    warnings = _fingerprint_warnings(selection, contract)
    for warning in warnings:
        log(f"warning: {warning}")
    header = _header(scorer, run_dir, contract, selection, warnings)
    if selection.binary:
        return _evaluate_binary(scorer, selection, contract, out_dir, header, gallery, started, log)
    classes = tuple(contract.classes)
    scored = _score(scorer, selection)
    report = classification_report(scored.labels, scored.predictions, classes)
    roc = roc_auc_per_class(scored.labels, scored.probabilities, classes)
    calibration = _calibration(selection, scored.logits, scored.labels, contract)
    log(
        f"{selection.split}: {len(selection.indices)} pictures, accuracy {report['accuracy']:.4f}, macro F1 "
        f"{report['macro_f1']:.4f}, ROC AUC macro {roc['macro']:.4f}, T {calibration['temperature']:.3f}, "
        f"ECE {calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f}"
    )
    figures = _figures(scored, report, roc, calibration, classes, history, out_dir)
    mistakes = _mistakes(scorer, selection, scored, classes, gallery, cam_method, out_dir, figures)
    example_files = _examples(scorer, selection, scored, classes, examples, cam_method, out_dir, figures)
    metrics = {
        **header,
        **report,
        "roc_auc": roc,
        "calibration": calibration,
        "most_confident_mistakes": mistakes,
        "cam_examples": example_files,
        "cam_method": cam_method,
        **_run_facts(scored.seconds, len(selection.indices), started),
    }
    markdown = report_markdown(metrics, contract, history, figures, out_dir)
    if boxes is not None:
        pointing = _pointing(onnx, selection, classes, boxes, out_dir, device, threads, pointing_gallery, log)
        if pointing is not None:
            metrics["pointing"], section = pointing
            markdown = markdown.rstrip("\n") + "\n\n" + section
    _write_report(out_dir, metrics, markdown, log)
    if update and selection.split == "validation" and onnx is None and run_dir is not None:
        _write_temperature(run_dir, contract, report, roc, calibration, log)
    return metrics


def _pointing(
    onnx: str | Path, selection: Selection, classes: tuple[str, ...], boxes: str | Path, out_dir: Path, device: str,
    threads: int, gallery: int, log: Any,
) -> tuple[dict[str, Any], str] | None:
    """The pointing game of the selection's boxed pictures (``pointing.json`` and its files); its headline
    figures for ``metrics.json`` and its report section."""
    from trainer.pointing import headline, measure_selection

    paths = [selection.data.paths[i] for i in selection.indices]
    names = [classes[label] for label in selection.data.labels[selection.indices]]
    result = measure_selection(onnx, paths, names, boxes, selection.data.roots, out_dir, device=device,
                               threads=threads, gallery_per_class=gallery, log=log)
    return None if result is None else (headline(result[0]), result[1])


def _run_facts(scoring_seconds: float, images: int, started: float) -> dict:
    """How long scoring and the whole evaluation took, and on what machine."""
    return {
        "scoring": {"seconds": round(scoring_seconds, 1), "images_per_s": round(images / max(scoring_seconds, 1e-9), 1)},
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _write_report(out_dir: Path, metrics: dict, markdown: str, log) -> None:
    """``metrics.json`` and ``report.md`` of an evaluation."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown)
    log(f"report: {out_dir / 'report.md'}")
