"""The Qt viewer: thin views over :mod:`brainscan.engine` (run ``brainscan-viewer`` or ``python -m brainscan.gui``)."""
