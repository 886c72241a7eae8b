"""The one Jinja2 environment of the views: every value a template is given is escaped unless it is
`Markup` that our own view code built (autoescape), so text from a user or a tokenizer never becomes HTML.

Values are escaped with `html.escape` (quotes too), so the app's pages and an exported file quote text alike.
"""

from __future__ import annotations

import html
from pathlib import Path

import jinja2
from markupsafe import Markup

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    finalize=lambda v: v if isinstance(v, Markup) else Markup(html.escape(str(v))))


def macros(name: str):
    """A template's macros, callable from Python; each returns `Markup`."""
    return TEMPLATES.get_template(name).module
