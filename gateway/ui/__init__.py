"""The operator console at /ui: server-rendered pages of models, drift and rollouts; and
the offline API docs at /docs."""

from gateway.ui.docs import docs_plugins, docs_router
from gateway.ui.routes import console_router
from gateway.ui.templating import console_templates

__all__ = ["console_router", "console_templates", "docs_plugins", "docs_router"]
