"""The README is the contract: its embedding example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import WAIT

README = Path(__file__).resolve().parent.parent / "README.md"


def test_embedding_example_runs() -> None:
    """The README's Python example runs to completion and prints what it says it prints."""
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * WAIT, check=True
    )
    assert "alice's message got seq 2" in out.stdout
    assert "{'lobby': ['alice', 'echo-bot']}" in out.stdout


def test_test_command_is_the_one_ci_runs() -> None:
    """.ci/run takes the README's marked test command, which runs pytest in a fresh venv."""
    text = README.read_text()
    block = text.split("<!-- test-command -->", 1)[1]
    cmd = re.search(r"```sh\n(.*?)\n```", block, re.S)
    assert cmd is not None and "python -m pytest" in cmd.group(1) and "venv" in cmd.group(1)
