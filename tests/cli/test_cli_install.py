"""`pip install` of the repository gives a `userexport` command (the console script), and the
client stands alone: it talks HTTP and never imports the function app's package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from devtools.stack import ROOT

PACKAGE = ROOT / "userexport_cli"


def _setuptools_is_recent() -> bool:
    major, minor = (int(part) for part in metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1)


def test_pip_install_of_the_repository_provides_the_console_script(tmp_path):
    assert _setuptools_is_recent(), (
        "pip install --no-build-isolation needs setuptools 70.1 or later in the venv "
        "(requirements-dev.txt pins it; run make install)"
    )
    # A copy of what the build reads, so the build's own output stays out of the work tree.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    # --target, not --prefix: pip then leaves the venv's own installation alone.
    target = tmp_path / "target"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    install = subprocess.run(
        [*pip, "--no-index", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    script = target / "bin" / "userexport"
    assert script.is_file(), sorted(p.name for p in target.iterdir())
    site = target
    installed = sorted(p.name for p in site.iterdir())
    assert "userexport_cli" in installed and "userexport" not in installed, installed
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}
    for args, expected in ((["--help"], "download"), (["--version"], "userexport 0.1.0")):
        run = subprocess.run(
            [str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert expected in run.stdout
    # Without a URL it says which flag is missing, with the usage error's exit code.
    run = subprocess.run(
        [str(script), "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "--url" in run.stderr


def test_the_venv_has_the_userexport_command():
    """What `make install` leaves (pip install -e . into .venv)."""
    script = shutil.which("userexport", path=str(Path(sys.executable).parent))
    assert script, "no userexport in the venv: make install runs pip install -e ."
    run = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "usage: userexport" in run.stdout, run.stderr


def test_the_client_never_imports_the_app():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert root not in ("userexport", "devtools"), f"{path.name} imports {name}"
