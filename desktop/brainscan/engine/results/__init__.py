"""The results floor: what screening found per frame (``record``: the in-memory ``FrameResult``, the typed
``FrameRecord`` everything else passes, the one ``frame_key``), the record's CSV and JSON forms (``rows``),
its cells (``cells``), the resumable ``results.csv`` with ``results.json`` (``store``) and the per-series
summary (``series``).
"""
