"""The linters as tests, so `make test` and CI run them: ruff's lint and format check on every Python
file of the repository and mypy on src/, clean at the settings in ruff.toml and mypy.ini (both
tools come from PyPI with the test set-up, requirements/test.txt); and no module importing a test
module (shared test code lives in conftest.py and helper modules under test/)."""

from __future__ import annotations

import ast
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


PYTHON_PATHS = ["src", "test", "bench", "scripts", "launch", "setup.py"]


def test_ruff_lint_is_clean():
    res = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "--output-format", "concise", *PYTHON_PATHS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    hint = f"\nsafe fixes: ruff check --fix {' '.join(PYTHON_PATHS)}"
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:] + hint


def test_ruff_format_is_clean():
    res = subprocess.run(
        [_tool("ruff"), "format", "--no-cache", "--check", *PYTHON_PATHS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    hint = f"\nfix with: ruff format {' '.join(PYTHON_PATHS)}"
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:] + hint


@pytest.mark.timeout(900)
def test_mypy_is_clean_on_src():
    res = subprocess.run(
        [_tool("mypy"), "--config-file", "mypy.ini"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def _test_module_names() -> set[str]:
    """Module names of the files pytest collects under test/ (its default python_files patterns)."""
    files = [*(REPO / "test").rglob("test_*.py"), *(REPO / "test").rglob("*_test.py")]
    return {f.stem for f in files if f.name != "conftest.py"}


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in the tree, indented ones inside functions included, and of
    importlib.import_module / __import__ calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_module_imports_a_test_module():
    """Issue 11: a test module importing another couples them (a helper edited for one test changes
    another's, running one file drags in the other's imports and fixtures); shared helpers and fixtures
    go in test/conftest.py or a helper module under test/ that pytest does not collect (test/*_tools.py)."""
    test_modules = _test_module_names()
    assert "test_lint" in test_modules  # the scan sees the test files
    offences = []
    for folder in ("test", "bench", "scripts", "launch"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, module in _imported_modules(tree):
                if module.split(".")[0] in test_modules:
                    offences.append(f"{path.relative_to(REPO)}:{line}: imports test module {module}")
    hint = "\nmove what is shared to test/conftest.py (fixtures) or a helper module such as test/mqtt_tools.py"
    assert not offences, "\n".join(offences) + hint


def test_every_shipped_model_carries_its_provenance():
    """Each model file in models/ has a .md beside it that names its source and license and
    carries the file's sha256 (a model replaced without its note fails here)."""
    import hashlib

    models = sorted((REPO / "models").glob("*.onnx"))
    assert models
    for model in models:
        note = model.with_name(model.name + ".md")
        assert note.is_file(), f"{model.name}: no {note.name} (source, license, sha256)"
        text = note.read_text(encoding="utf-8")
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        assert digest in text, f"{note.name} does not carry {model.name}'s sha256 {digest}"
        assert "source" in text.lower() and "licen" in text.lower(), f"{note.name}: source or license missing"
