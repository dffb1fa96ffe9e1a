"""The REST API of a supervisor node (FastAPI), under ``/api/v1``.

``create_app(node)`` builds the application for anything implementing
``supervisor.nodeapi.NodeAPI`` (a node, a manager, a fake); domain errors become HTTP status codes
only here.
"""

from .app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
