"""The README says the truth: the reference is generated from wire.py; its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from streamtag.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_reference_is_generated_from_the_wire_module() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme",
                                                  ROOT / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    text = (ROOT / "README.md").read_text()
    assert mod.render(text) == text, "run: python scripts/update_readme.py"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash scripts/setup --dev && .venv/bin/python -m pytest -q"
    assert command in readme and command in ci
    # On the stock-OS path: Debian's own externally managed python3 first, not a private build.
    assert 'export PATH="/usr/bin:/bin' in ci


def test_readme_run_command_uses_the_venv_setup_makes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup && .venv/bin/streamtag run" in readme
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "venv=.venv" in setup and "-m venv" in setup


def test_every_command_in_the_readme_table_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `streamtag ([a-z-]+)", readme, flags=re.M))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert documented and documented <= set(sub.choices)


def test_the_profiles_example_in_connecting_your_tools_is_a_valid_config() -> None:
    import yaml

    from streamtag.config import config_from_dict

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Connecting your tools"):]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.S)
    assert block is not None
    cfg = config_from_dict(yaml.safe_load(block.group(1)))
    assert [(t.profile, t.port) for t in cfg.outputs.osc.targets] == [
        ("bundle", 9000), ("touchdesigner", 10000), ("wekinator", 6448)]
