"""``python -m trainer graft``: fit the explanation head and the domain guard on an exported model.

Steps (all on the exported graph, so what is fitted is what the application runs):

1. the config's data, near-duplicates grouped and split as in the validated run (the same seed);
2. the stage maps and pooled features of every picture, as it is and in ``variants`` real-world
   variants (:mod:`trainer.picture_variants`: margins, gamma, contrast, blur, noise), cached;
3. the guard fitted on the training part (all variants), its threshold chosen on the held-out
   validation pictures for the stated false-flag rate, then measured on the validation variants
   and on pictures that are not brain MRI (:mod:`trainer.ood_pictures`);
4. the head trained on the training part with the tumour boxes carried over from figshare
   (``python -m trainer match-boxes``), its pointing game measured on the validation pictures;
5. both grafted onto the graph (:mod:`trainer.graft`), the contract updated and stamped, the
   graft checked against numpy on real pictures.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch

from brainscan.engine.model.cam import HEAD_METHOD
from brainscan.engine.model.contract import DOMAIN_SCORE, HEAD_MAPS, METADATA_KEY, ModelContract
from brainscan.engine.model.integrity import file_sha256, stamp_contract
from trainer.boxes import POINTING_TOLERANCE, read_box_table
from trainer.config import FitConfig
from trainer.domain_guard import DomainGuard, fit_guard, threshold_for
from trainer.explain_head import ExplainHead, HeadTraining, head_maps, train_head
from trainer.graft import graft, guard_features
from trainer.graph_taps import STAGE_TAPS, extract, tapped_session
from trainer.ood_pictures import ood_pictures
from trainer.picture_variants import field_variant
from trainer.prepared_data import Prepared, prepare_data

Log = Callable[[str], None]


@dataclass(frozen=True)
class GraftSettings:
    variants: int = 2
    false_flag_rate: float = 0.01
    guard_rank: int = 128
    head: HeadTraining = field(default_factory=HeadTraining)
    seed: int = 0


@dataclass
class Bank:
    """One variant of every picture: guard features, stage maps (float16), logits, placements."""

    guard: np.ndarray
    stages: np.ndarray
    logits: np.ndarray
    placements: np.ndarray  # N x 3: scale, offset x, offset y (the original's place in the variant)


def _bank(session, contract: ModelContract, pictures: list[np.ndarray], placements: np.ndarray) -> Bank:
    guard, stages, logits = [], [], []
    for batch in extract(session, contract, pictures):
        guard.append(guard_features(batch))
        stages.append(np.concatenate([batch[tap] for tap in STAGE_TAPS], axis=1).astype(np.float16))
        logits.append(batch["logits"])
    return Bank(np.concatenate(guard), np.concatenate(stages), np.concatenate(logits), placements)


def feature_banks(model_path: Path, contract: ModelContract, data: Prepared, variants: int, cache: Path,
                  log: Log) -> list[Bank]:
    """The banks of variant 0 (the pictures) to ``variants``, read from ``cache`` when there."""
    session = tapped_session(model_path)
    key = f"{file_sha256(model_path)[:12]}-{data.fingerprint.split(':')[-1][:12]}"
    banks = []
    for variant in range(variants + 1):
        path = cache / f"bank-{key}-v{variant}.npz"
        if path.is_file():
            with np.load(path) as stored:
                banks.append(Bank(**{name: stored[name] for name in ("guard", "stages", "logits", "placements")}))
            continue
        log(f"features of {len(data.paths)} pictures, variant {variant} of {variants} ...")
        pictures, placements = [], []
        for index, picture in enumerate(data.pictures):
            if variant == 0:
                pictures.append(picture)
                placements.append((1.0, 0.0, 0.0))
            else:
                shifted, where = field_variant(picture, np.random.default_rng([variant, index]))
                pictures.append(shifted)
                placements.append((where.scale, where.offset_x, where.offset_y))
        bank = _bank(session, contract, pictures, np.array(placements, dtype=np.float32))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **asdict(bank))
        banks.append(bank)
    return banks


def trained_figshare_ids(csv_path: Path, data: Prepared) -> list[str]:
    """The figshare ids whose boxes trained the head (twins of training pictures): measure elsewhere."""
    trained = {"/".join(Path(data.paths[i]).parts[-2:]) for i in data.train}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return sorted({row["figshare_id"] for row in csv.DictReader(handle)
                       if "/".join(Path(row["path"]).parts[-2:]) in trained}, key=int)


def placed_boxes(boxes: np.ndarray, placements: np.ndarray) -> np.ndarray:
    """The boxes moved into each variant (NaN stays NaN)."""
    scale, dx, dy = placements[:, 0:1], placements[:, 1:2], placements[:, 2:3]
    return boxes * scale + np.concatenate([dx, dy, dx, dy], axis=1)


def pointing_rates(maps: np.ndarray, logits: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                   classes: tuple[str, ...], side: int) -> dict[str, dict[str, float]]:
    """The pointing game at the input size: the predicted class's map upsampled, its peak in the box."""
    tolerance = POINTING_TOLERANCE * side
    hits: dict[str, list[bool]] = {}
    for index in np.flatnonzero(~np.isnan(boxes[:, 0])):
        target = int(np.argmax(logits[index]))
        heat = cv2.resize(maps[index, target].astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        x0, y0, x1, y1 = boxes[index]
        hit = x0 - tolerance <= col + 1 and col <= x1 + tolerance and y0 - tolerance <= row + 1 and row <= y1 + tolerance
        hits.setdefault(classes[labels[index]], []).append(bool(hit))
    table = {name: {"pointing": round(float(np.mean(v)), 4), "pictures": len(v)} for name, v in sorted(hits.items())}
    every = [hit for v in hits.values() for hit in v]
    table["all"] = {"pointing": round(float(np.mean(every)), 4) if every else float("nan"), "pictures": len(every)}
    return table


def fit_domain_guard(banks: list[Bank], data: Prepared, settings: GraftSettings, contract: ModelContract,
                     session_path: Path, log: Log) -> tuple[DomainGuard, dict]:
    """The guard fitted on the training part, thresholded on validation, and what it flags."""
    train, val = data.train, data.val
    guard = fit_guard(np.concatenate([b.guard[train] for b in banks]),
                      np.concatenate([data.labels[train]] * len(banks)), contract.num_classes, rank=settings.guard_rank)
    threshold = threshold_for(guard.distance(banks[0].guard[val]), settings.false_flag_rate)
    guard = DomainGuard(guard.means, guard.directions, guard.variances, guard.residual_variance, threshold)
    flagged = {f"validation variant {i}": round(float((guard.score(b.guard[val]) > 1).mean()), 4)
               for i, b in enumerate(banks)}
    session = tapped_session(session_path)
    for name, pictures in ood_pictures(count=60, seed=settings.seed + 1).items():
        features = np.concatenate([guard_features(batch) for batch in extract(session, contract, pictures)])
        flagged[f"not brain MRI: {name}"] = round(float((guard.score(features) > 1).mean()), 4)
    log("domain guard: flagged " + ", ".join(f"{k} {v:.1%}" for k, v in flagged.items()))
    facts = {
        "method": "class-conditional Mahalanobis distance, one shared covariance (probabilistic-PCA form, "
                  f"{settings.guard_rank} leading directions), on the spatial means of the stage-3 and stage-4 maps "
                  "and the pooled last maps; score = distance / threshold, in domain when at most 1",
        "fitted_on": f"{len(train)} training pictures of the grouped split, each as it is and in "
                     f"{settings.variants} real-world variants (margins, gamma, contrast, blur, noise)",
        "threshold_chosen_on": f"{len(val)} held-out validation pictures (near-duplicate groups apart from the fit)",
        "false_flag_rate": settings.false_flag_rate,
        "flagged": flagged,
        "caveat": "the shipped backbone is a refit that saw the validation pictures; the guard's own fit did not",
    }
    return guard, facts


def fit_explain_head(banks: list[Bank], data: Prepared, boxes: np.ndarray, settings: GraftSettings,
                     contract: ModelContract, log: Log) -> tuple[ExplainHead, dict]:
    """The head trained on the training part (all variants), its pointing game on validation."""
    train, val = data.train, data.val
    stages = np.concatenate([b.stages[train] for b in banks])
    labels = np.concatenate([data.labels[train]] * len(banks))
    moved = np.concatenate([placed_boxes(boxes[train], b.placements[train]) for b in banks])
    log(f"explanation head: {len(stages)} training maps, {int((~np.isnan(moved[:, 0])).sum())} with a tumour box")
    head = train_head(stages, labels, moved, contract.num_classes, settings.head, log=log)
    side = contract.input_size[0]
    measured = {}
    for i, bank in enumerate(banks):
        maps = head_maps(head, bank.stages[val])
        measured[f"validation variant {i}"] = pointing_rates(
            maps, bank.logits[val], placed_boxes(boxes[val], bank.placements[val]), data.labels[val],
            contract.classes, side)
    log("explanation head, pointing game on validation: " + json.dumps(measured))
    facts = {
        "method": HEAD_METHOD,
        "description": "class activation maps of a small head (3x3 conv, ReLU, 1x1 conv) on the backbone's "
                       "stage-3 and stage-4 maps (14 x 14 at 224), trained with the classes and, where a picture "
                       "carries one, the tumour box carried over from figshare (box mass loss)",
        "trained_on": f"{len(train)} training pictures of the grouped split and {settings.variants} variants each; "
                      f"{int((~np.isnan(boxes[train, 0])).sum())} of them with a box",
        "pointing_validation": measured,
        "tolerance": f"{POINTING_TOLERANCE:.4f} of the picture side (15 px at 512)",
    }
    return head, facts


def choose_series_rule(banks: list[Bank], data: Prepared, guard: DomainGuard, contract: ModelContract,
                       series_length: int = 192, false_series_rate: float = 0.01,
                       min_probability: float = 0.9) -> tuple[dict, dict]:
    """The series rule from the validation frames (every variant): the false-call rate the engine sizes the
    agreeing slices by, per series length, and ``min_agreeing_slices`` for a typical series of ``series_length``.

    ``f``, the share of in-domain ``notumor`` validation frames called a tumour class at ``p >=
    min_probability`` (with one false call added, so that a clean validation set does not promise
    zero), gives for a normal series of ``series_length`` slices the chance that ``k`` or more slices
    are falsely called: the smallest ``k`` that keeps it under ``false_series_rate`` is taken.
    """
    from scipy.stats import binom

    from brainscan.engine.model.inference import calibration_temperature, negative_class_index, softmax

    negative = negative_class_index(contract.classes)
    temperature = calibration_temperature(contract.metrics)
    false_calls = normal = hits = tumours = 0
    for bank in banks:
        probabilities = softmax(bank.logits[data.val] / temperature)
        inside = guard.score(bank.guard[data.val]) <= 1
        top, sure = probabilities.argmax(axis=1), probabilities.max(axis=1) >= min_probability
        truth = data.labels[data.val]
        is_normal = inside & (truth == negative)
        false_calls += int((is_normal & (top != negative) & sure).sum())
        normal += int(is_normal.sum())
        is_tumour = inside & (truth != negative)
        hits += int((is_tumour & (top == truth) & sure).sum())
        tumours += int(is_tumour.sum())
    rate = (false_calls + 1) / (normal + 2)
    k = next(k for k in range(1, series_length) if binom.sf(k - 1, series_length, rate) <= false_series_rate)
    rule = {"min_agreeing_slices": int(k), "min_probability": min_probability, "min_in_domain_share": 0.25,
            "false_call_rate": round(rate, 6), "false_series_rate": false_series_rate}
    facts = {
        "rule": rule,
        "false_tumour_frames": f"{false_calls} of {normal} in-domain notumor validation frames (all variants)",
        "tumour_frames_found": f"{hits} of {tumours} in-domain tumour validation frames at p >= {min_probability}",
        "why": f"with a false-call rate of {rate:.4f} per frame, a normal series of {series_length} slices reaches "
               f"{k} false slices with chance {binom.sf(k - 1, series_length, rate):.4f} (at most {false_series_rate})",
    }
    return rule, facts


def check_graft(path: Path, contract: ModelContract, pictures: list[np.ndarray], head: ExplainHead,
                guard: DomainGuard) -> dict[str, float]:
    """The grafted graph's outputs against numpy/torch on the same pictures: largest differences."""
    session = tapped_session(path, taps=STAGE_TAPS)
    input_name = session.get_inputs()[0].name
    from brainscan.engine.model.preprocess import to_model_input

    maps_out, score_out = session.run([HEAD_MAPS, DOMAIN_SCORE], {input_name: to_model_input(pictures, contract)})
    batch = next(extract(session, contract, pictures, batch_size=len(pictures)))
    stages = np.concatenate([batch[tap] for tap in STAGE_TAPS], axis=1)
    with torch.no_grad():
        expected_maps = head(torch.from_numpy(stages.astype(np.float32))).numpy()
    expected_score = guard.score(guard_features(batch))
    return {"head_maps": float(np.abs(maps_out - expected_maps).max()),
            "domain_score": float(np.abs(score_out - expected_score).max())}


def measure_pointing(path: Path, boxed_root: Path, exclude: set[str], log: Log) -> dict[str, dict]:
    """Every method's pointing game on boxed originals (the map of the predicted class, as screened), for the
    contract's ``metrics.pointing``: the viewer and the reports quote it beside the map."""
    from brainscan.engine.model.inference import Classifier
    from trainer.pointing import boxed_pictures, measure, summarise

    classifier = Classifier(path, device="cpu")
    pictures = boxed_pictures(boxed_root, classifier.classes, exclude=exclude)
    summary = summarise(measure(classifier, pictures))
    on = f"{summary['pictures']} held-out figshare slices"  # whose Kaggle twins did not train the head
    pointing = {}
    for method, maps in summary["methods"].items():
        cells = maps["predicted"]
        pointing[method] = {"all": cells["overall"]["pointing"],
                            **{name: cell["pointing"] for name, cell in cells["per_class"].items()}, "on": on}
    log("pointing game: " + ", ".join(f"{m} {100 * v['all']:.1f} %" for m, v in pointing.items()))
    return pointing


def run_graft(model_path: Path, config: FitConfig, boxes_csv: Path, out: Path, settings: GraftSettings,
              version: str, cache: Path, log: Log = print, pointing_boxes: Path | None = None) -> Path:
    """The whole command: fit, graft, stamp, check; writes ``out`` and ``out``.json (what was measured)."""
    model = onnx.load(str(model_path))
    metadata = {p.key: p.value for p in model.metadata_props}
    contract = ModelContract.from_metadata(metadata, source=str(model_path))
    data = prepare_data(config, log)
    banks = feature_banks(model_path, contract, data, settings.variants, cache, log)
    guard, guard_facts = fit_domain_guard(banks, data, settings, contract, model_path, log)
    boxes = read_box_table(boxes_csv, data.paths, contract.input_size[0])
    head, head_facts = fit_explain_head(banks, data, boxes, settings, contract, log)
    series_rule, series_facts = choose_series_rule(banks, data, guard, contract)
    log(f"series rule: {series_facts}")
    graft(model, head, guard, mirrored="hflip" in contract.views_in_graph)
    metrics = {**contract.metrics, "series_rule_choice": series_facts}
    updated = contract.with_updates(version=version, explanation=head_facts, domain_guard=guard_facts,
                                    series_rule=series_rule, metrics=metrics)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = updated.to_json()
    stamp_contract(model)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    differences = check_graft(out, updated, list(data.pictures[data.val[:16]]), head, guard)
    log(f"graft check on 16 validation pictures: largest differences {differences}")
    facts = {"model": str(out), "grafted_on": str(model_path), "guard": guard_facts, "head": head_facts,
             "series_rule": series_facts, "check": differences}
    out.with_suffix(".graft.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    ids = trained_figshare_ids(boxes_csv, data)
    out.with_suffix(".trained-figshare-ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    if pointing_boxes is not None:
        from trainer.export import write_contract

        pointing = measure_pointing(out, pointing_boxes, set(ids), log)
        note = ("pointing game: peak within the tumour box grown by 15 px at 512 px, map of the predicted class, on "
                "the figshare originals whose Kaggle twins did not train the head")
        write_contract(out, updated.with_updates(metrics={**updated.metrics, "pointing": pointing,
                                                          "pointing_note": note}))
    log(f"{len(ids)} figshare ids trained the head (their Kaggle twins are training pictures); measure the pointing "
        f"game without them: --exclude-ids {out.with_suffix('.trained-figshare-ids.txt')}")
    return out
