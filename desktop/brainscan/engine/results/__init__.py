"""The results floor: what screening found per frame (``record``), its cells (``cells``), the resumable
``results.csv`` with ``results.json`` (``store``) and the per-series summary (``series``).
"""
