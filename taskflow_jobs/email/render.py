"""Email bodies from Jinja2 templates: an HTML part and a plain-text part per message type.

Every type has three templates in `templates/`: `<type>.subject.txt`, `<type>.txt` and
`<type>.html`. HTML is autoescaped, so a user called `<script>alert(1)</script>` is shown,
not run. Undefined variables raise (StrictUndefined): a template that needs data the
message does not carry is a clear permanent failure, not an email that says "Hi ,".
Anything that ends up in a header (subject, display names) goes through `single_line`,
so CR/LF in user data can never start a new header.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"
PRODUCT = "TaskFlow"
SUBJECT_MAX = 200

_SPACES = re.compile(r"\s+")


class TemplateProblem(ValueError):
    """A template is missing, broken, or needs a value the message does not have."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def single_line(value: str | None, max_length: int = 200) -> str:
    """`value` safe for a header: control and line-break characters become spaces."""
    if not value:
        return ""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in value
    )
    cleaned = _SPACES.sub(" ", cleaned).strip()
    if len(cleaned) > max_length:
        cleaned = cleaned[: max_length - 1].rstrip() + "…"
    return cleaned


def paragraphs(text: str) -> list[str]:
    """Split plain text on blank lines (the HTML part renders each as a <p>)."""
    return [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


class Renderer:
    """Loads the templates once and renders subject, text and HTML for a message type."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._templates: dict[str, tuple[jinja2.Template, jinja2.Template, jinja2.Template]] = {}

    def templates(self, template: str) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
        """Subject, text and HTML templates of a message type, looked up once per type."""
        found = self._templates.get(template)
        if found is None:
            found = self._templates[template] = (
                self.env.get_template(f"{template}.subject.txt"),
                self.env.get_template(f"{template}.txt"),
                self.env.get_template(f"{template}.html"),
            )
        return found

    def render(self, template: str, context: dict[str, Any]) -> RenderedEmail:
        """Render `template` (a message type); raises TemplateProblem naming the cause."""
        values = {"product": PRODUCT, **context}
        try:
            subject_template, text_template, html_template = self.templates(template)
            subject = subject_template.render(values)
            values["subject"] = single_line(subject, SUBJECT_MAX)
            text = text_template.render(values)
            html = html_template.render(values)
        except jinja2.TemplateNotFound as exc:
            raise TemplateProblem(f"template {exc.name!r} not found") from None
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(f"template {template!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"template {template!r} failed: {exc}") from None
        if not values["subject"]:
            raise TemplateProblem(f"template {template!r} rendered an empty subject")
        return RenderedEmail(values["subject"], text, html)
