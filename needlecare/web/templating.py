"""Jinja templates for web pages (templates/web): always autoescaped, undefined names are errors."""

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from needlecare.core.rendering import TEMPLATES_DIR

# Starlette's default only escapes *.html/*.htm/*.xml; our pages are *.html.j2.
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(str(TEMPLATES_DIR / "web")), autoescape=True, undefined=StrictUndefined)
)
