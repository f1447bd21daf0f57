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


def verify_weights(model_path: str | Path, metadata: Mapping[str, str], *, allow_unverified: bool = False) -> str:
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
