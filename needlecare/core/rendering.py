"""One strict Jinja environment for emails: <name>.subject.j2, <name>.txt.j2, <name>.html.j2."""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=4)
def environment(root: Path = TEMPLATES_DIR) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_email(name: str, context: dict[str, Any], root: Path = TEMPLATES_DIR) -> RenderedEmail:
    env = environment(root)
    subject = env.get_template(f"emails/{name}.subject.j2").render(context)
    return RenderedEmail(
        subject=" ".join(subject.split()),
        text=env.get_template(f"emails/{name}.txt.j2").render(context),
        html=env.get_template(f"emails/{name}.html.j2").render(context),
    )
