"""The REST API of a supervisor node (FastAPI), under ``/api/v1``.

``create_app(supervisor)`` builds the application; domain errors of the core become HTTP status
codes only here.
"""

from .app import API_PREFIX, create_app
from .deps import SupervisorAPI

__all__ = ["API_PREFIX", "SupervisorAPI", "create_app"]
