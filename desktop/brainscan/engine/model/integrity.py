"""A checksum of a model's weights, recorded in its contract and verified when it is opened.

The trainer's export records ``weights_sha256`` in the contract JSON (metadata key
:data:`~brainscan.engine.model.contract.METADATA_KEY`); :class:`~brainscan.engine.model.inference.Classifier`
recomputes it and refuses a model whose weights no longer match. A model whose contract records no
checksum is refused too (:class:`~brainscan.engine.errors.UnverifiedModelError`) unless the caller
explicitly allows it (``--allow-unverified-model``); it then runs as :data:`UNVERIFIED`, and every
report of the run says so (:data:`UNVERIFIED_WARNING`). The checksum covers the graph's
initializers only, so it is independent of how the file was serialised and of the metadata it
carries (the contract cannot hold a checksum of itself):

    for every initializer, sorted by name:
        name (UTF-8), NUL, ONNX data type name, NUL, shape as text, NUL, raw bytes (little endian)

Raw bytes are the tensor's values as numpy gives them in little-endian order, whichever field of
the TensorProto holds them (``raw_data``, ``float_data``, ...), so re-saving a model does not
change its checksum; changing any weight, name, type or shape does.

Both the trainer and the engine use :func:`weights_sha256`. It needs the ``onnx`` package
(Apache-2.0, no torch), imported only when a checksum is computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainscan.engine.errors import ModelError, UnverifiedModelError
from brainscan.engine.model.contract import METADATA_KEY

if TYPE_CHECKING:  # pragma: no cover
    import onnx

CHECKSUM_KEY = "weights_sha256"
VERIFIED = "verified"
UNVERIFIED = "unverified (no checksum in contract)"
ALLOW_UNVERIFIED_FLAG = "--allow-unverified-model"
UNVERIFIED_WARNING = "UNVERIFIED MODEL: its weights could not be checked against a checksum"


def _load(model: onnx.ModelProto | str | os.PathLike[str]) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(os.fspath(model))


def weights_sha256(model: onnx.ModelProto | str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a model's initializers, as the module notes define it.

    Parameters
    ----------
    model:
        An ``onnx.ModelProto`` (the trainer, before saving) or the path of an ONNX file.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = _load(model)
    digest = hashlib.sha256()
    for tensor in sorted(proto.graph.initializer, key=lambda t: t.name):
        array = np.ascontiguousarray(numpy_helper.to_array(tensor))
        if sys.byteorder == "big" and array.dtype.itemsize > 1:  # numpy gives native order
            array = array.byteswap()
        kind = onnx.TensorProto.DataType.Name(tensor.data_type)
        shape = "x".join(str(int(d)) for d in tensor.dims)
        digest.update(tensor.name.encode("utf-8") + b"\0" + kind.encode("ascii") + b"\0")
        digest.update(shape.encode("ascii") + b"\0")
        digest.update(array.tobytes())
    return digest.hexdigest()


def recorded_checksum(metadata: Mapping[str, str]) -> str | None:
    """The ``weights_sha256`` recorded in a model's contract metadata, or None when there is none."""
    try:
        raw = json.loads(metadata.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        return None  # the contract reader reports a broken contract with its own message
    value = raw.get(CHECKSUM_KEY) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None


def is_verified(integrity: object) -> bool:
    """Whether a model card's ``integrity`` says the weights matched their checksum."""
    return integrity == VERIFIED


def unverified_error(model_path: str | Path) -> UnverifiedModelError:
    """The one-line refusal of a model whose contract records no checksum, with the ways out."""
    return UnverifiedModelError(
        f"{model_path}: its contract records no weights checksum ({CHECKSUM_KEY}), so its weights cannot be "
        "verified and may have been altered; re-export it with the trainer (python -m trainer export), or stamp "
        f"it with installer/stamp_weights_checksum.py, or pass {ALLOW_UNVERIFIED_FLAG} to use it anyway, "
        "knowing its results may come from altered weights"
    )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a whole file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- files verified before -----------------------------------------------------------------------
# Parsing a model to hash its weights costs about half a second (most of it importing the onnx
# package), at every start. A file whose bytes were verified once needs no second parse: the cache
# maps the SHA-256 of the whole file to the weights checksum it was verified against, and is trusted
# only for exactly those bytes and that recorded checksum. Losing or damaging it costs one parse.
CACHE_ENV = "BRAINSCAN_CACHE"
VERIFIED_CACHE = "verified-weights.json"
CACHE_ENTRIES = 64


def cache_dir() -> Path:
    """``$BRAINSCAN_CACHE``, else ``$XDG_CACHE_HOME/brainscan``, else ``~/.cache/brainscan``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "brainscan"


def _verified_before() -> dict[str, str]:
    try:
        entries = json.loads((cache_dir() / VERIFIED_CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(
        entries, dict) else {}


def _remember_verified(file_digest: str, checksum: str) -> None:
    entries = _verified_before()
    entries.pop(file_digest, None)
    entries[file_digest] = checksum
    kept = dict(list(entries.items())[-CACHE_ENTRIES:])
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{VERIFIED_CACHE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(kept), encoding="utf-8")
        os.replace(temporary, folder / VERIFIED_CACHE)
    except OSError:  # a read-only home: verification just runs again next time
        pass


def verify_weights(
    model_path: str | Path, metadata: Mapping[str, str], *, allow_unverified: bool = False,
    file_digest: str | None = None,
) -> str:
    """Check a model file's weights against the checksum its contract records.

    Parameters
    ----------
    model_path:
        The ONNX file.
    metadata:
        Its metadata (``custom_metadata_map``), which holds the contract.
    allow_unverified:
        Accept a model whose contract records no checksum (as :data:`UNVERIFIED`) instead of
        refusing it. The refusal needs only the metadata: no hash is computed.
    file_digest:
        The SHA-256 of the whole file, when the caller has it: a file verified before with these
        very bytes and this recorded checksum is not parsed again (see :func:`cache_dir`).

    Returns
    -------
    str
        :data:`VERIFIED`, or :data:`UNVERIFIED` when the contract records no checksum and
        ``allow_unverified`` is true.

    Raises
    ------
    UnverifiedModelError
        The contract records no checksum and ``allow_unverified`` is false.
    ModelError
        The weights do not match the recorded checksum (the file was altered after export), or
        the file cannot be parsed to check them.
    """
    expected = recorded_checksum(metadata)
    if expected is None:
        if not allow_unverified:
            raise unverified_error(model_path)
        return UNVERIFIED
    if file_digest is not None and _verified_before().get(file_digest) == expected.lower():
        return VERIFIED
    try:
        actual = weights_sha256(model_path)
    except Exception as exc:  # onnx raises its own errors for damaged files
        raise ModelError(
            f"{model_path}: its weights cannot be read to verify their checksum ({type(exc).__name__}: "
            f"{str(exc)[:200]}); re-export or re-download the model"
        ) from exc
    if actual != expected.lower():
        raise ModelError(
            f"{model_path}: the weights do not match the checksum in its contract (recorded "
            f"{expected[:12]}..., found {actual[:12]}...): the file was altered after export; "
            "re-download or re-export the model, and do not edit its weights"
        )
    if file_digest is not None:
        _remember_verified(file_digest, actual)
    return VERIFIED


def stamp_contract(model: onnx.ModelProto) -> str:
    """Record the weights' checksum in the contract of an in-memory model; returns the checksum.

    For the trainer's export (after the contract is set, before saving) and for
    ``installer/stamp_weights_checksum.py``. Other metadata entries are kept in their order.

    Raises
    ------
    ModelError
        The model has no brainscan contract yet.
    """
    checksum = weights_sha256(model)
    entries = [(p.key, p.value) for p in model.metadata_props]
    keys = [key for key, _ in entries]
    if METADATA_KEY not in keys:
        raise ModelError(f"the model has no brainscan contract (metadata key {METADATA_KEY!r}) to record the checksum in")
    contract: dict[str, Any] = json.loads(entries[keys.index(METADATA_KEY)][1])
    contract[CHECKSUM_KEY] = checksum
    text = json.dumps(contract, indent=None, sort_keys=True)
    del model.metadata_props[:]
    for key, value in entries:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text if key == METADATA_KEY else value
    return checksum
