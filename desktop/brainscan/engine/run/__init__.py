"""The run floor: the screening loop (``screening``, decoding ahead in ``decode_ahead``) and one run into an
output folder (``folder_run``: results, overlays and reports), the loop behind the CLI and the viewer's reports.
"""
