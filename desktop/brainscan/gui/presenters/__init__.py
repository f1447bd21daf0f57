"""The main window's presenters: each turns the user's requests about one thing into engine calls and
shows the outcome in the widgets it was given.

- :mod:`.open_presenter`: opening files, folders and DICOM folders, the recent list, dropped paths.
- :mod:`.model_presenter`: the model file and device in use, opening it, its integrity warning, Settings.
- :mod:`.batch_presenter`: *Classify all*: progress, cancel, the results table and the series summary.
- :mod:`.report_presenter`: *Write report*: the dialog's scopes and the report folder written in the background.
- :mod:`.export_presenter`: exporting the image with its overlay (PNG) and the results (CSV).
- :mod:`.occlusion_presenter`: *Occlusion check*: the slice's occlusion map in the background, drawn as its heat layer.
"""
