"""The input floor: files and folders to frames to screen (discovery), and frames to the model's picture.

Raster images (``raster``, ``raster_headers``), DICOM (``dicom_header``, ``dicom_decode`` with the isolated
GDCM child, ``dicom_pixels`` the pixel chain, ``dicom_series`` grouping and order), what a frame is
(``frames``), finding them (``discovery``) and decoding one (``loading``). Imports nothing of the other floors.
"""
