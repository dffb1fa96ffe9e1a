"""Libraries of the builtin pipelines: code they share or build on, never a pipeline itself.

``h5writer`` (the HDF5 writer core of ``h5_writer`` and ``pulse_buffer``), ``ca_camera`` (the
Channel Access side of ``camera_epics``), ``camera_geometry`` (the camera sources' geometry).
A registry entry cannot name these: ``"builtin"`` names only the table of builtin pipelines.
"""
