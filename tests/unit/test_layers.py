"""Layers a reader can trust (docs/architecture.md): Graph code imports no storage and no export
step; storage keeps serialised state and imports no Graph type. Read from the imports
themselves, so a new import across a layer fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "userexport"
STORAGE_SDKS = ("azure.data.tables", "azure.storage")
STORAGE = ("jobs", "series", "idempotency", "pacestore", "blobsink")


def imports(path: Path) -> set[str]:
    """Absolute names of what a module imports (relative imports resolved in userexport)."""
    package = ["userexport", *path.relative_to(PACKAGE).parent.parts]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_graph_code_imports_no_storage_and_no_export_step():
    for path in (PACKAGE / "graph").glob("*.py"):
        for name in imports(path):
            assert not name.startswith(STORAGE_SDKS), (path.name, name)
            if name.startswith("userexport.") and not name.startswith("userexport.graph"):
                allowed = ("userexport.budget", "userexport.errors", "userexport.filters")
                assert name.startswith(allowed), (path.name, name)


def test_storage_imports_no_graph_type_and_no_request_parser():
    """Storage records typed state (request.py's ExportRequest), never parsing a caller's body."""
    for module in STORAGE:
        for name in imports(PACKAGE / f"{module}.py"):
            assert not name.startswith("userexport.exportrequest"), f"{module}.py imports {name}"
            if name.startswith("userexport.graph"):
                assert module == "pacestore" and name.startswith("userexport.graph.pace"), (
                    f"{module}.py imports {name}"
                )


def _written_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def test_what_a_caller_reads_about_a_job_is_written_in_reasons_only():
    """A job's reason and lastError are never spelt out in an export step: reasons.py says them
    (a step may still join two of its texts)."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "reasons.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg in ("reason", "last_error"):
                assert not _written_text(node.value), (path.name, node.lineno)
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr in (
                        "reason",
                        "last_error",
                    ):
                        assert not _written_text(node.value) or (
                            isinstance(node.value, ast.JoinedStr)
                            and all(
                                not isinstance(v, ast.Constant) or not str(v.value).strip()
                                for v in node.value.values
                            )
                        ), (path.name, node.lineno)


def test_the_csv_and_errors_file_code_knows_no_graph():
    for module in ("csvfile", "errorsfile"):
        for name in imports(PACKAGE / f"{module}.py"):
            assert not name.startswith("userexport.graph"), f"{module}.py imports {name}"
