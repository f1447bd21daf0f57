"""``python -m brainscan.gui [PATH ...]`` starts the viewer."""

from __future__ import annotations

from brainscan.gui.app import main

raise SystemExit(main())
