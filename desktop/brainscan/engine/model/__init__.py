"""The model floor: the contract inside the ONNX file and its checksum, preprocessing, onnxruntime inference,
the exact CAM family in numpy, and heat-map colouring (``overlay``). Imports nothing of the other floors.
"""
