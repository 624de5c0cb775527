"""What the console's action forms send: a reason, bounded."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request

from gateway.errors import BadRequestError

MAX_REASON_CHARS: Final = 1000


async def reason_of(request: Request[Any, Any, Any], *, required: bool) -> str:
    """The form's reason, bounded; 400 when a required one is missing."""
    reason = (await request.form()).get("reason", "")
    reason = reason.strip() if isinstance(reason, str) else ""
    if required and not reason:
        raise BadRequestError("a reason is required: say why, it goes into the audit log")
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequestError(f"the reason is over {MAX_REASON_CHARS} characters: shorten it")
    return reason
