"""The built-in Python runner: ``python -m runners.python``."""
