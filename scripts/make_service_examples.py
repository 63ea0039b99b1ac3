"""Regenerate examples/systemd and examples/launchd from the code `streamtag service install`
runs (tests/test_service.py checks they match). Run: python scripts/make_service_examples.py"""

from __future__ import annotations

from pathlib import Path

from streamtag.service import EXAMPLE_HOME_LINUX, EXAMPLE_HOME_MACOS, example_files

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    for rel, data in example_files().items():
        (ROOT / rel).write_bytes(data)
        print(f"wrote {rel} (home {EXAMPLE_HOME_LINUX} / {EXAMPLE_HOME_MACOS})")
