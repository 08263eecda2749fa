"""The web console: server-rendered pages on top of the same services as the API.

``install(app)`` (called from ``api.py``) mounts the static files, includes every area's
router (``console/<area>/views.py`` exporting ``router``; routes are left out of the OpenAPI
schema) and renders errors raised on console pages as HTML instead of problem+json.
"""

from __future__ import annotations

from aayu_accounts.console.setup import install

__all__ = ["install"]
