"""brainscan: research software for brain-tumour screening of MRI. Not for diagnosis.

The package is layered (checked by import-linter, see ``pyproject.toml``):

- :mod:`brainscan.engine`: torch-free, Qt-free image input, model contract, inference,
  Grad-CAM and screening. Both the command line and the viewer drive it.
- :mod:`brainscan.cli`: the ``brainscan`` console command.
- :mod:`brainscan.gui`: the Qt viewer (thin views over the engine).
"""

from __future__ import annotations

__version__ = "0.1.0"

RESEARCH_USE_NOTICE = "Research use only. Not for diagnosis or any clinical decision."
