"""README's quick start is what CI runs, and what a newcomer follows literally."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 1)]


def test_ci_runs_the_quick_start_commands_as_readme_writes_them():
    blocks = re.findall(r"```bash\n(.*?)```", _quick_start(), re.S)
    commands = [line for line in blocks[-1].splitlines() if line.strip()]
    assert commands == ['pip install . && perfxl demo', 'pip install ".[test]" && python -m pytest']
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert ci[-2:] == commands, "keep .ci/run's last two lines identical to README's quick start"


def test_the_quick_start_says_what_a_newcomer_trips_over():
    """It once said nothing of a virtual environment (Debian's pip refuses to install without one), of
    where the demo writes, or of what the tests need and how long they take."""
    said = _quick_start()
    assert "python3 -m venv .venv && . .venv/bin/activate" in said and "externally-managed-environment" in said
    assert "`outputs/demo`" in said
    assert "LibreOffice" in said and "Chromium" in said and "four to six minutes" in said
    assert "docs/汇总人须知.md" in said and (ROOT / "docs" / "汇总人须知.md").is_file()
