"""Jinja templates for web pages (templates/web), autoescaped."""

from fastapi.templating import Jinja2Templates

from needlecare.rendering import TEMPLATES_DIR

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "web"))
