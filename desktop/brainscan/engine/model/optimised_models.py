"""Models as onnxruntime optimised them for this machine, kept in the user's cache so that later starts skip it.

Opening the shipped model with every graph optimisation (``ORT_ENABLE_ALL``: constant folding, fusions, the
CPU's blocked layouts) takes 45-170 ms on the 2-core test machine, at every start; the optimised graph that
onnxruntime saves opens in 15-30 ms with optimisation off, and gives the very same outputs (measured: largest
difference 0.0 over every output of the shipped model). The saved graph can hold layouts for this CPU's
instruction set, so it is kept per CPU (model name and flags) and per onnxruntime version, under the SHA-256
of the model file it came from (:func:`brainscan.engine.model.integrity.cache_dir`, ``optimised-models/``).

It is kept only after the model's contract, graph and weights checksum were checked on the original file
(:class:`~brainscan.engine.model.inference.Classifier`), and every start checks the original file again
(its SHA-256 finds the optimised copy; its weights checksum, remembered for those bytes, stands) and the
copy's contract against its graph and that checksum. A damaged or unreadable copy is dropped and the
original opened instead. The cache folder is trusted as the program's own files are: whoever can write
there could also replace the copy's weights (as they could edit the installed program).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import onnxruntime as ort

from brainscan.engine.model.integrity import cache_dir

OPTIMISED_DIR = "optimised-models"
KEPT = 8  # optimised copies kept; the oldest go first


def cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (``/proc/cpuinfo``), else what :mod:`platform` says."""
    name = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.strip()
                if name and flags:
                    break
    except OSError:
        pass
    if not name:
        import platform

        name = platform.processor() or platform.machine()
    return f"{name}|{flags}"


def optimised_path(file_sha256: str) -> Path:
    """Where the optimised copy of the model file with this SHA-256 lives for this CPU and onnxruntime."""
    machine = hashlib.sha256(cpu_identity().encode("utf-8")).hexdigest()[:16]
    return cache_dir() / OPTIMISED_DIR / f"{file_sha256[:32]}-ort{ort.__version__}-{machine}.onnx"


def saving_path(target: Path) -> Path | None:
    """A temporary name beside ``target`` for onnxruntime to save the optimised graph to (None: the cache
    folder cannot be made)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return target.with_name(f".{target.stem}.{os.getpid()}.tmp")


def keep(saved: Path, target: Path) -> None:
    """Move a saved optimised graph to its place (and let the oldest copies go); a failure only costs the
    optimisation again next time."""
    try:
        os.replace(saved, target)
        copies = sorted(target.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime)
        for old in copies[:-KEPT]:
            old.unlink()
    except OSError:
        discard(saved)


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
