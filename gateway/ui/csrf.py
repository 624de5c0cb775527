"""Cross-site request forgery checks of every console POST.

Two checks, each enough alone against a browser: the request must come from the console's
own origin (browsers send `Origin` and `Sec-Fetch-Site` on every POST, and a page cannot
forge them), and it must carry the session's CSRF secret, which only the console's own
pages hold (in each form, and in the htmx requests' `X-CSRF-Token` header). The secret is
bound to the session rather than to a second cookie (Litestar's double-submit `CSRFConfig`
is app-wide, for every API route too), so a secret from another session is refused.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException

CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def check_same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Refuse (403) a request that a browser says comes from another site's page.

    Clients that are not browsers send neither header; the CSRF secret still binds them.
    """
    origin = connection.headers.get("origin")
    host = connection.headers.get("host", "")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
        raise PermissionDeniedException(
            f"this form was sent from {origin}, not from this gateway's console; "
            "use the console's own pages"
        )
    site = connection.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise PermissionDeniedException(
            f"this form was sent from a {site} page, not from this gateway's console; "
            "use the console's own pages"
        )


async def check_token(connection: ASGIConnection[Any, Any, Any, Any], expected: str) -> None:
    """Refuse (403) a request without the CSRF secret `expected`, in the `X-CSRF-Token`
    header or the form's `_csrf` field."""
    presented = connection.headers.get(CSRF_HEADER)
    form = connection.headers.get("content-type", "").startswith(FORM_TYPES)
    if presented is None and form and isinstance(connection, Request):
        field = (await connection.form()).get(CSRF_FIELD)  # cached: the handler reads it too
        presented = field if isinstance(field, str) else None
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise PermissionDeniedException(
            "the request lacks this session's CSRF token (or it is stale): reload the console "
            "page and try again"
        )
