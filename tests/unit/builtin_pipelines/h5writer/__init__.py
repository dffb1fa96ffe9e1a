"""Tests of the HDF5 writer core (builtin_pipelines.h5writer)."""
