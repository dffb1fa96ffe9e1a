"""pipevisor: a supervisor for stream-processing pipelines.

This package stays import-light on purpose: programs launched by the supervisor import
``supervisor.contract``, which runs this file first.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
