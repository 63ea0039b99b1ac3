"""Regenerate the OSC/ZeroMQ reference in README.md from streamtag/publish/wire.py.

Run: python scripts/update_readme.py   (tests/test_readme.py fails when it is out of date)
"""

from __future__ import annotations

import re
from pathlib import Path

from streamtag.publish.wire import reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"


def render(text: str) -> str:
    block = f"{BEGIN}\n{reference_markdown('/streamtag').strip()}\n{END}"
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def main() -> None:
    README.write_text(render(README.read_text()))


if __name__ == "__main__":
    main()
