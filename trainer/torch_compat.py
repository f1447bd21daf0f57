"""Make ``import torchvision`` (and so ``import timm``) work with a CPU torch.

Some torchvision wheels carry a C extension built for a different torch (for example the CUDA
build) than the one installed. Importing it then fails while registering fake kernels for its
custom operators: ``RuntimeError: operator torchvision::nms does not exist``. The trainer needs
none of those operators (it uses timm's models, not torchvision's detection ops), so when, and
only when, that exact failure happens, :func:`ensure_torchvision` imports torchvision again with
``torch.library.register_fake`` made tolerant of the missing ``torchvision::`` operators. With a
matching torchvision it imports normally and changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

_MODE: str | None = None


def _is_missing_operator(exc: BaseException) -> bool:
    return "torchvision::" in str(exc) and "does not exist" in str(exc)


def _purge_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision() -> str:
    """Import torchvision, working around a C extension that does not match torch.

    Returns
    -------
    str
        ``"native"`` when torchvision imported normally, ``"python-only"`` when its custom
        operators had to be skipped (detection ops such as ``nms`` are then unavailable).
    """
    global _MODE
    if _MODE is not None:
        return _MODE
    try:
        import torchvision

        _MODE = "native"
        return _MODE
    except RuntimeError as exc:
        if not _is_missing_operator(exc):
            raise
    _purge_torchvision()
    original = torch.library.register_fake

    def tolerant(op: Any, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda fn=None: fn
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake = original
    _MODE = "python-only"
    return _MODE
