"""Record ``weights_sha256`` in the contract of an exported model, for models exported before the
trainer recorded it.

    python installer/stamp_weights_checksum.py MODEL.onnx [--out STAMPED.onnx]

Only the contract JSON in the metadata changes; the graph and its weights are untouched. The result
is written to a temporary file first and replaces ``--out`` (default: MODEL itself) only when
brainscan opens it, reports its integrity as ``verified`` and gives the same outputs as the original
on a test picture. Exit status 0 on success, 2 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from brainscan.engine.errors import BrainscanError
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import VERIFIED, stamp_contract


def stamp(source: Path, target: Path) -> str:
    """Write ``source`` with the checksum in its contract to ``target``; returns the checksum."""
    # refuses a model without a valid contract; one without a checksum is what this script is for
    original = Classifier(source, device="cpu", allow_unverified=True)
    model = onnx.load(os.fspath(source))
    checksum = stamp_contract(model)
    handle, temporary = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        onnx.save(model, temporary)
        stamped = Classifier(temporary, device="cpu")
        if stamped.integrity != VERIFIED:
            raise BrainscanError(f"{target}: the stamped model is not verified ({stamped.integrity})")
        height, width = original.contract.input_size
        picture = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        before, after = original.predict([picture])[0], stamped.predict([picture])[0]
        if not np.array_equal(before.logits, after.logits):
            raise BrainscanError(f"{target}: the stamped model gives other outputs than {source}")
        del stamped
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return checksum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an exported brainscan ONNX model")
    parser.add_argument("--out", type=Path, default=None, help="where to write the stamped model (default: in place)")
    args = parser.parse_args(argv)
    target = args.out or args.model
    try:
        checksum = stamp(args.model, target)
    except BrainscanError as exc:
        print(f"stamp_weights_checksum: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"stamp_weights_checksum: error: {exc}", file=sys.stderr)
        return 2
    print(f"{target}: weights_sha256 {checksum} recorded and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
