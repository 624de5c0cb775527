"""The console's comparison of two versions: `GET /ui/models/{m}/compare?a=&b=`, the page
of what `GET /v1/models/{m}/compare` answers."""

from __future__ import annotations

import time

from litestar import get
from litestar.params import FromPath

from gateway.compare_api import Version
from gateway.ui import words
from gateway.ui.console import Asked, Page
from gateway.ui.views import compare_view
from registry.names import validate_model_name


@get("/models/{name:str}/compare", name="console-compare")
async def compare_page(console: Asked, name: FromPath[str], a: Version, b: Version) -> Page:
    """Versions `a` and `b` side by side: manifests, training sets, live evidence. A
    snapshot, not a live region: the live evidence's window moves with every look."""
    validate_model_name(name)
    view = await compare_view(console.manager.registry, console.evidence, name=name, a=a, b=b)
    return console.page(
        "compare.html", "models", view=view, name=name, at=words.moment(time.time())
    )
