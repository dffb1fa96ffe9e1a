"""Tests of the HDF5 writer core (builtin_pipelines.lib.h5writer)."""
