"""The Qt viewer: thin views over :mod:`brainscan.engine` (run ``brainscan-viewer`` or ``python -m brainscan.gui``)."""

from brainscan.gui.pyside_fix import protect_bools

protect_bools()
