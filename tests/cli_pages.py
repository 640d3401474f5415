"""The `inferwatch` command as a user runs it (a fresh interpreter, the installed package),
and the numbers a report page carries in its `data-key` / `data-value` attributes."""

from __future__ import annotations

import sys
from html.parser import HTMLParser

# What the console script runs, without depending on where pip put the script.
INFERWATCH = [sys.executable, "-c",
              "import sys; from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))"]


class _DataValues(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-key" in found:
            self.values[found["data-key"] or ""] = found.get("data-value") or ""


def data_values(html: str) -> dict[str, str]:
    """A report page's `data-key` -> `data-value` pairs: its numbers, exactly as written."""
    parser = _DataValues()
    parser.feed(html)
    parser.close()
    return parser.values
