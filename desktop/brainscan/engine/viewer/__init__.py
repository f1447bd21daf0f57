"""The viewer floor: the viewer's Qt-free models (session and navigation, display windows, heat-map overlay
state, the results table), which the Qt widgets of ``brainscan.gui`` show. Never imports Qt.
"""
