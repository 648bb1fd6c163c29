"""The linters as tests, so `make test` and CI run them: ruff (lint) and mypy on src/, ruff's format
check on every Python file of the repository, clean at the settings in ruff.toml and mypy.ini. Both come from PyPI with the test set-up (requirements/test.txt)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = BIN / name
    if not exe.is_file():
        pytest.fail(f"{name} is not installed in {BIN}: the test set-up installs it (requirements/test.txt)")
    return str(exe)


def test_ruff_lint_is_clean_on_src():
    res = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "src"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


FORMATTED = ["src", "test", "bench", "scripts", "launch", "setup.py"]


def test_ruff_format_is_clean():
    res = subprocess.run(
        [_tool("ruff"), "format", "--no-cache", "--check", *FORMATTED],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    hint = f"\nfix with: ruff format {' '.join(FORMATTED)}"
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:] + hint


@pytest.mark.timeout(900)
def test_mypy_is_clean_on_src():
    res = subprocess.run(
        [_tool("mypy"), "--config-file", "mypy.ini"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
