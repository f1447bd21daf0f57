"""Where the shipped model's heat maps point: the pointing game on the figshare tumour boxes.

    .venv/bin/python bench/pointing_game.py [--model FILE] [--limit N] [--ids-file FILE] [--exclude-ids FILE] [--out DIR]
        [--results bench/results/pointing_game.md]

Screens the 512 px figshare slices of ``../shared/data/figshare-boxes/{glioma,meningioma,pituitary}`` on
the engine's path (``brainscan screen``'s decoding, batching, network and heat maps; the network once per
picture) and, for every CAM method the model offers, the map of the predicted class (what ``screen``
writes in ``cam_peak_row``/``cam_peak_col``) and of the true class: the share of pictures whose peak lies
in the tumour box grown by 15 px at 512 px (95 % Wilson interval) and the mean share of the heat inside
the box, per class and overall, beside chance (a random peak, even heat). ``--limit N`` takes N pictures
per class spread over the ids; ``--ids-file`` / ``--exclude-ids`` keep or drop listed figshare ids (one a
line). The table goes to ``--results`` as Markdown too. ``--out DIR`` also writes ``pointing.json``, ``pointing.md``, ``pointing_pictures.csv`` and a
gallery of hits and misses (:mod:`trainer.pointing`). These pictures are for measuring, never training.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import onnxruntime as ort

from brainscan.engine.model.inference import Classifier
from brainscan.engine.resources import default_model_path
from trainer.pointing import (
    boxed_pictures,
    measure,
    pointing_markdown,
    read_ids,
    screen_default_method,
    summarise,
    write_pointing,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "figshare-boxes"


def _cell(cell: dict) -> str:
    if not cell["pictures"]:
        return f"{'–':>24}"
    low, high = cell["pointing_ci95"]
    return f"{100 * cell['pointing']:5.1f} [{100 * low:4.1f}-{100 * high:4.1f}] {cell['heat_inside']:.3f}"


def table(summary: dict) -> str:
    """Method x map rows, a column per class and overall: pointing % [95 % CI] and mean heat-inside share."""
    names = list(summary["pictures_per_class"])
    columns = [*names, "all"]
    lines = [f"{'method':<10} {'map of':<10} " + " ".join(f"{c:>24}" for c in columns),
             f"{'':<21} " + " ".join(f"{'% [95 % CI] inside':>24}" for _ in columns)]
    for method, targets in summary["methods"].items():
        for target, cells in targets.items():
            row = [cells["per_class"][n] for n in names] + [cells["overall"]]
            lines.append(f"{method:<10} {target:<10} " + " ".join(f"{_cell(c):>24}" for c in row))
    chance = summary["chance"]
    row = [chance["per_class"][n] for n in names] + [chance["overall"]]
    cells = [f"{100 * c['random_peak_hits']:5.1f} {'':>11} {c['even_heat_inside']:.3f}" for c in row]
    lines.append(f"{'chance':<10} {'random':<10} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def results_markdown(summary: dict, model: str, wall: float, rate: float, threads: int, command: str) -> str:
    """The ``bench/results`` page: the machine, the command, the time and the report's table."""
    return (
        f"# Pointing game of {model}\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}, {threads} threads. "
        f"`{command}`: wall time {wall:.1f} s ({rate:.1f} pictures/s: decoding, the network with its mirror, "
        "and every method's maps of two classes at 512 px).\n\n"
        + pointing_markdown(summary, heading="##")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--data", type=Path, default=DATA, help="class folders of pictures with ID.txt boxes")
    parser.add_argument("--boxes", type=Path, help="the box files, when not beside the pictures")
    parser.add_argument("--limit", type=int, help="pictures per class, spread over the ids")
    parser.add_argument("--ids-file", type=Path, help="measure only these figshare ids")
    parser.add_argument("--exclude-ids", type=Path, help="leave these figshare ids out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write pointing.json, pointing.md, the CSV and the gallery here")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "pointing_game.md")
    args = parser.parse_args()
    started = time.perf_counter()
    classifier = Classifier(args.model, device="cpu", threads=args.threads)
    pictures = boxed_pictures(
        args.data, classifier.classes, boxes=args.boxes, limit=args.limit,
        only=read_ids(args.ids_file) if args.ids_file else None,
        exclude=read_ids(args.exclude_ids) if args.exclude_ids else None,
    )
    if not pictures:
        raise SystemExit(f"no boxed pictures of the model's classes under {args.data}")
    measurement = measure(classifier, pictures, batch_size=args.batch_size)
    default = screen_default_method(classifier)
    summary = summarise(measurement, default) if args.out is None else write_pointing(
        classifier, measurement, args.out, default_method=default, log=lambda _: None)[0]
    wall = time.perf_counter() - started
    print(f"{args.model.name} ({classifier.contract.version}) on {summary['pictures']} figshare slices "
          f"({', '.join(f'{n} {c}' for c, n in summary['pictures_per_class'].items())}); accuracy "
          f"{100 * summary['accuracy']:.1f} %; `brainscan screen` default method: {default}")
    print(f"pointing game: peak in the box grown by {summary['tolerance']['pixels_at_512']:g} px at 512 px; "
          "cells: pointing % [95 % Wilson] mean heat-inside share")
    print(table(summary))
    for method, why in summary["skipped_methods"].items():
        print(f"not measured: {method} ({why})")
    if summary["failed_pictures"]:
        print(f"{len(summary['failed_pictures'])} picture(s) could not be read")
    if summary["box_label_disagrees_with_folder"]:
        print(f"{len(summary['box_label_disagrees_with_folder'])} box file(s) name another class than their folder")
    rate = len(pictures) / measurement.seconds
    print(f"wall time {wall:.1f} s (measurement {measurement.seconds:.1f} s, {rate:.1f} pictures/s; "
          f"{platform.machine()}, {args.threads} onnxruntime threads)" + (f"; files in {args.out}" if args.out else ""))
    command = "bench/pointing_game.py " + " ".join(sys.argv[1:])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(results_markdown(summary, f"{args.model.name} ({classifier.contract.version})", wall,
                                             rate, args.threads, command.strip()), encoding="utf-8")
    print(f"table: {args.results}")


if __name__ == "__main__":
    main()
