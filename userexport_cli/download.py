"""The files of a finished export, into a folder, under the names the job gives them: the CSV
(`downloadUrl`), the changes file of a delta run (`changesUrl`) and the errors file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import ApiClient
from .errors import CliError, Exit

WITH_FILES = ("succeeded", "completedWithErrors")


@dataclass(frozen=True)
class Downloaded:
    """Where the files went (absolute paths); `csv` is None for a delta run's changes without a
    snapshot (it has no full CSV), `changes` is None but for a delta run's changes."""

    csv: Path | None
    changes: Path | None
    errors: Path

    @property
    def main(self) -> Path:
        """The file a script wants: the full CSV, else the changes file."""
        return self.csv or self.changes or self.errors

    def as_json(self) -> dict[str, str]:
        named = {"csv": self.csv, "changes": self.changes, "errors": self.errors}
        return {key: str(path) for key, path in named.items() if path is not None}


def file_names(job: dict[str, Any]) -> tuple[str, str]:
    """The CSV's name (the job's fileName) and the errors file's (`<name>-errors.csv`, as the
    app names its download)."""
    name = job.get("fileName")
    # The app only accepts plain names; anything else is not used as a path here either.
    if not isinstance(name, str) or not name.endswith(".csv") or Path(name).name != name:
        name = f"{job.get('id', 'export')}.csv"
    if name.startswith("."):
        name = f"export{name}"
    return name, f"{name.removesuffix('.csv')}-errors.csv"


def changes_name(job: dict[str, Any]) -> str:
    """The changes file's name (`<name>-changes.csv`, as the app names its download)."""
    return f"{file_names(job)[0].removesuffix('.csv')}-changes.csv"


def download_files(
    client: ApiClient, job: dict[str, Any], folder: Path, *, force: bool
) -> Downloaded:
    """Writes the export's files into `folder` (made if missing): the CSV when the job has one,
    the changes file when it has one, and the errors file; refuses to replace a file unless
    `force`."""
    status = job.get("status")
    if status not in WITH_FILES:
        reason = f": {job['reason']}" if job.get("reason") else ""
        raise CliError(Exit.FAILED, f"export {job.get('id')} is {status}, it has no files{reason}")
    csv_name, errors_name = file_names(job)
    csv_url, changes_url = job.get("downloadUrl"), job.get("changesUrl")
    targets: dict[str, tuple[object, Path]] = {}  # by kind, as the job's `files` name them
    if isinstance(csv_url, str) or not isinstance(changes_url, str):
        targets["csv"] = (csv_url, folder / csv_name)  # no URL at all: refused below
    if isinstance(changes_url, str):
        targets["changes"] = (changes_url, folder / changes_name(job))
    targets["errors"] = (job.get("errorsUrl"), folder / errors_name)
    if folder.exists() and not folder.is_dir():
        raise CliError(Exit.USAGE, f"--out: {folder} is not a folder.")
    if not force:
        present = [str(path) for _, path in targets.values() if path.exists()]
        if present:
            raise CliError(
                Exit.USAGE,
                f"{' and '.join(present)} already exist{'s' if len(present) == 1 else ''}; "
                "pass --force to overwrite, or choose another --out.",
            )
    for url, path in targets.values():
        if not isinstance(url, str):
            raise CliError(Exit.UNREACHABLE, f"the app gave no download URL for {path.name}.")
    facts = job.get("files") if isinstance(job.get("files"), dict) else {}
    for kind, (url, path) in targets.items():
        expected = facts.get(kind)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            client.download(
                str(url), path, expected=expected if isinstance(expected, dict) else None
            )
        except OSError as error:
            raise CliError(
                Exit.USAGE, f"--out: cannot write {path}: {error.strerror or error}"
            ) from None
    paths = {key: path.resolve() for key, (_, path) in targets.items()}
    return Downloaded(paths.get("csv"), paths.get("changes"), paths["errors"])
