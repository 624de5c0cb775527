"""The console's Jinja2 templates, as Litestar's template engine."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

TEMPLATES = Path(__file__).parent / "templates"


def console_templates() -> TemplateConfig[JinjaTemplateEngine]:
    """Every template escapes what it inserts (charts come as markup: `Chart.__html__`),
    and a name a template misspells is an error, not an empty string."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))
