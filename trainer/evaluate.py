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

On the validation split the fitted temperature is written into the run's contract
(``metrics["calibration"]["temperature"]``), so every later export carries it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from brainscan.engine.cam import compute_cam
from brainscan.engine.contract import CAM_WEIGHT, FEATURES, LOGITS, ModelContract
from brainscan.engine.preprocess import normalize
from trainer import plots
from trainer.calibration import calibrate, calibration_scores, reliability, softmax
from trainer.config import FitConfig
from trainer.device import Runtime, machine_info
from trainer.errors import TrainerError
from trainer.fit import HISTORY, Prepared, load_checkpoint, prepare_data, split_description, update_contract
from trainer.metrics import classification_report, roc_auc_per_class
from trainer.refit import refuse_refit_on_held_out

SPLITS = ("validation", "train", "test", "all")
GALLERY_TILE = 160


class Scorer(Protocol):
    """Logits and CAM feature maps of uint8 pictures at the input size."""

    name: str

    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def cam_weight(self) -> np.ndarray: ...


class TorchScorer:
    """A torch model on the training runtime's device."""

    def __init__(self, model: torch.nn.Module, contract: ModelContract, rt: Runtime) -> None:
        self.model = model.to(rt.device).eval()
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.contract, self.rt = contract, rt
        self.name = f"torch checkpoint ({rt.describe()})"

    @torch.no_grad()
    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.rt.prepare(torch.from_numpy(normalize(pictures, self.contract)).to(self.rt.device))
        with self.rt.autocast():
            features = self.model.forward_features(x)
            logits = self.model.forward_head(features)
        return logits.float().cpu().numpy(), features.float().cpu().contiguous().numpy()

    @property
    def cam_weight(self) -> np.ndarray:
        return self.model.get_classifier().weight.detach().float().cpu().numpy()


class OnnxScorer:
    """An exported ONNX file in onnxruntime (what the application runs)."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        from trainer.export import open_session, read_contract

        self.path = Path(path)
        self.session = open_session(self.path, threads=threads)
        self.contract = read_contract(self.session, source=str(self.path))
        self.input = self.session.get_inputs()[0].name
        self.name = f"onnxruntime ({self.path.name})"
        self._weight: np.ndarray | None = None

    def run(self, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and features as the application gets them: with the contract's test-time
        augmentation (``hflip``: the logits of the picture and its mirror averaged, as the engine does)."""
        tensor = normalize(pictures, self.contract)
        mirrored = "hflip" in self.contract.test_time_augmentation
        if mirrored:
            tensor = np.concatenate([tensor, tensor[..., ::-1]])
        logits, features, weight = self.session.run([LOGITS, FEATURES, CAM_WEIGHT], {self.input: tensor})
        self._weight = weight
        if mirrored:
            count = len(pictures)
            logits, features = (logits[:count] + logits[count:]) / 2, features[:count]
        return logits, features

    @property
    def cam_weight(self) -> np.ndarray:
        if self._weight is None:
            height, width = self.contract.input_size
            self.run(np.zeros((1, height, width, 3), dtype=np.uint8))
        return self._weight


def score(scorer: Scorer, pictures: np.ndarray, indices: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits of ``pictures[indices]``, in batches."""
    out = []
    for start in range(0, len(indices), batch_size):
        logits, _ = scorer.run(pictures[indices[start : start + batch_size]])
        out.append(logits)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@dataclass
class Selection:
    """The pictures being evaluated and how they were chosen."""

    data: Prepared
    indices: np.ndarray
    split: str
    description: str


def select_data(config: FitConfig, split: str, data_roots: list[str] | None, log: Any = print) -> Selection:
    """Rebuild the data for ``split`` of the run (or all of other ``data_roots``)."""
    if data_roots:
        other = FitConfig.from_dict({**config.as_dict(), "data": tuple(data_roots), "limit": None})
        data = prepare_data(other, log, splits=("training", "testing", "validation", "unsplit"), split=False)
        return Selection(data, data.val, "external", f"all {len(data.val)} readable pictures under "
                         + ", ".join(data_roots))
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


def _cams(scorer: Scorer, pictures: np.ndarray, targets: list[list[int]], method: str) -> list[list[np.ndarray]]:
    """For each picture, the CAMs of the given target classes, at the input size."""
    weight = scorer.cam_weight
    out = []
    for start in range(0, len(pictures), 16):
        _, features = scorer.run(pictures[start : start + 16])
        for offset, maps in enumerate(features):
            size = pictures.shape[1:3]
            out.append([compute_cam(method, maps, weight, t, size) for t in targets[start + offset]])
    return out


def _relative_name(path: Path, roots: tuple[Path, ...]) -> str:
    for root in roots:
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            continue
        return relative if len(roots) == 1 else f"{root.name}/{relative}"
    return str(path)


def evaluate(
    run: str | Path | None = None,
    *,
    onnx: str | Path | None = None,
    split: str = "validation",
    data: list[str] | None = None,
    out: str | Path | None = None,
    update: bool = True,
    gallery: int = 12,
    examples: int = 4,
    cam_method: str = "gradcam",
    device: str = "auto",
    threads: int = 2,
    log: Any = print,
) -> dict[str, Any]:
    """Score a run's checkpoint (or an ONNX file) and write the report; returns the metrics."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    history: list[dict[str, Any]] | None = None
    run_dir = Path(run) if run is not None else None
    if run_dir is not None and run_dir.is_file():
        run_dir = run_dir.parent
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
    config = FitConfig.from_dict({**config.as_dict(), "threads": threads})
    if run_dir is not None and (run_dir / HISTORY).is_file():
        history = json.loads((run_dir / HISTORY).read_text())
    out_dir = Path(out) if out else (run_dir or Path(onnx).parent) / ("report" if split == "validation" and not data
                                                                        else f"report-{'external' if data else split}")
    out_dir.mkdir(parents=True, exist_ok=True)

    if onnx is not None and split == "validation" and not data:
        refuse_refit_on_held_out(contract.metrics, str(onnx))
    selection = select_data(config, split, data, log)
    prepared, indices = selection.data, selection.indices
    warnings = []
    trained_on = contract.training.get("data_fingerprint")
    if selection.split in ("validation", "train") and trained_on and trained_on != prepared.fingerprint:
        warnings.append(
            f"the data's fingerprint ({prepared.fingerprint}) differs from the one trained on ({trained_on}): "
            "the split may not be the training run's, so these figures may include trained-on pictures"
        )
    for warning in warnings:
        log(f"warning: {warning}")
    classes = tuple(contract.classes)
    labels = prepared.labels[indices]
    tic = time.perf_counter()
    logits = score(scorer, prepared.pictures, indices)
    scoring_s = time.perf_counter() - tic
    probabilities = softmax(logits)
    predictions = probabilities.argmax(1)
    report = classification_report(labels, predictions, classes)
    roc = roc_auc_per_class(labels, probabilities, classes)
    if selection.split == "validation":
        calibration = calibrate(logits, labels, prepared.groups[indices])
    else:
        temperature = float(contract.metrics.get("calibration", {}).get("temperature", 1.0))
        calibration = {
            "temperature": temperature,
            "method": "the temperature fitted on the run's validation split, applied here"
            if "calibration" in contract.metrics else "no temperature in the contract: T = 1",
            "before": calibration_scores(logits, labels, 1.0),
            "after": calibration_scores(logits, labels, temperature),
        }
    temperature = calibration["temperature"]
    log(
        f"{selection.split}: {len(indices)} pictures, accuracy {report['accuracy']:.4f}, macro F1 "
        f"{report['macro_f1']:.4f}, ROC AUC macro {roc['macro']:.4f}, T {temperature:.3f}, "
        f"ECE {calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f}"
    )

    # Figures.
    figures = {
        "confusion": plots.confusion_png(report["confusion_matrix"], classes, out_dir / "confusion_matrix.png"),
        "roc": plots.roc_png(labels, probabilities, classes, roc["per_class"], out_dir / "roc.png"),
        "reliability": plots.reliability_png(
            reliability(probabilities, labels), reliability(softmax(logits, temperature), labels), temperature,
            calibration, out_dir / "reliability.png",
        ),
    }
    if history:
        figures["curves"] = plots.curves_png(history, out_dir / "training_curves.png")

    # The most confident mistakes, with the CAMs of the predicted and the true class.
    confidence = probabilities.max(1)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:gallery]
    names = [_relative_name(prepared.paths[i], prepared.roots) for i in indices]
    mistakes = [
        {
            "file": names[k],
            "true": classes[labels[k]],
            "predicted": classes[predictions[k]],
            "confidence": round(float(confidence[k]), 4),
            "p_true": round(float(probabilities[k, labels[k]]), 4),
        }
        for k in wrong
    ]
    if len(wrong):
        pictures = prepared.pictures[indices[wrong]]
        cams = _cams(scorer, pictures, [[int(predictions[k]), int(labels[k])] for k in wrong], cam_method)
        rows = [
            [
                plots.tile(pictures[r], None, f"true {classes[labels[k]]}", GALLERY_TILE),
                plots.tile(pictures[r], cams[r][0], f"{classes[predictions[k]]} {confidence[k]:.2f}", GALLERY_TILE),
                plots.tile(pictures[r], cams[r][1], f"CAM {classes[labels[k]]}", GALLERY_TILE),
            ]
            for r, k in enumerate(wrong)
        ]
        pairs = [rows[i] + (rows[i + 1] if i + 1 < len(rows) else []) for i in range(0, len(rows), 2)]
        figures["mistakes"] = plots.write_png(out_dir / "mistakes_gradcam.png", plots.grid(pairs))

    # Grad-CAM examples per class: correctly classified pictures, chosen at random (seeded).
    rng = np.random.default_rng(0)
    example_rows, example_files = [], {}
    for c, name in enumerate(classes):
        right = np.flatnonzero((labels == c) & (predictions == c))
        chosen = np.sort(rng.choice(right, size=min(examples, len(right)), replace=False)) if len(right) else right
        if not len(chosen):
            continue
        pictures = prepared.pictures[indices[chosen]]
        cams = _cams(scorer, pictures, [[c]] * len(chosen), cam_method)
        example_rows.append(
            [plots.tile(pictures[r], cams[r][0], f"{name} {confidence[k]:.2f}", GALLERY_TILE)
             for r, k in enumerate(chosen)]
        )
        example_files[name] = [names[k] for k in chosen]
    if example_rows:
        figures["examples"] = plots.write_png(out_dir / "gradcam_per_class.png", plots.grid(example_rows))

    metrics = {
        "model": scorer.name,
        "run": run_dir.name if run_dir is not None else f"{contract.name} {contract.version}",
        "views_in_graph": list(contract.views_in_graph),
        "test_time_augmentation": list(contract.test_time_augmentation),
        "data_fingerprint": prepared.fingerprint,
        "contract": {"name": contract.name, "version": contract.version, "architecture": contract.architecture},
        "split": selection.split,
        "split_description": selection.description,
        "warnings": warnings,
        **report,
        "roc_auc": roc,
        "calibration": calibration,
        "most_confident_mistakes": mistakes,
        "cam_examples": example_files,
        "cam_method": cam_method,
        "scoring": {"seconds": round(scoring_s, 1), "images_per_s": round(len(indices) / max(scoring_s, 1e-9), 1)},
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(metrics, contract, history, figures, out_dir))
    log(f"report: {out_dir / 'report.md'}")

    if update and selection.split == "validation" and onnx is None and run_dir is not None:
        validation = dict(contract.metrics.get("validation", {}))
        validation.update(
            weighted_f1=report["weighted_f1"], roc_auc=roc, images=report["images"], accuracy=report["accuracy"]
        )
        calibrated = contract.with_updates(metrics={**contract.metrics, "validation": validation,
                                                    "calibration": calibration})
        update_contract(run_dir, calibrated)
        log(f"temperature {temperature:.4f} written into {run_dir}/contract.json and the checkpoint's contract")
    return metrics


# -- the Markdown report -----------------------------------------------------------------------
def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_markdown(
    metrics: dict[str, Any], contract: ModelContract, history: list[dict[str, Any]] | None,
    figures: dict[str, Path], out_dir: Path,
) -> str:
    classes = list(contract.classes)
    training = contract.training
    calibration = metrics["calibration"]
    roc = metrics["roc_auc"]

    def link(key: str, alt: str) -> list[str]:
        if key not in figures:
            return []
        return [f"![{alt}]({figures[key].relative_to(out_dir).as_posix()})", ""]

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
    lines += ["", *link("confusion", "confusion matrix"), *link("roc", "ROC curves")]
    before, after = calibration["before"], calibration["after"]
    lines += [
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
    lines += ["", *link("reliability", "reliability diagram")]
    lines += ["## Training curves", ""]
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
        lines += ["", *link("curves", "training curves")]
    else:
        stage2 = training.get("stages", {}).get("stage2", {})
        lines += [
            "No per-epoch history was recorded for this run (it predates `history.json`). "
            + (f"Stage 2 ran {stage2.get('steps')} steps, loss {stage2.get('first_loss')} → {stage2.get('last_loss')}, "
               f"training accuracy {stage2.get('train_accuracy')}." if "steps" in stage2 else ""),
            "",
        ]
    lines += [
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
    lines += link("examples", "Grad-CAM per class")
    lines += [
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
    return "\n".join(lines)
