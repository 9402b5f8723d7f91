"""The two files of a finished export, into a folder, under the names the job gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .client import ApiClient
from .errors import CliError, Exit

WITH_FILES = ("succeeded", "completedWithErrors")


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


def download_files(
    client: ApiClient, job: dict[str, Any], folder: Path, *, force: bool
) -> tuple[Path, Path]:
    """Writes the CSV and the errors file into `folder` (made if missing); refuses to replace
    a file unless `force`. Returns (csv path, errors path)."""
    status = job.get("status")
    if status not in WITH_FILES:
        reason = f": {job['reason']}" if job.get("reason") else ""
        raise CliError(Exit.FAILED, f"export {job.get('id')} is {status}, it has no files{reason}")
    csv_name, errors_name = file_names(job)
    targets = [
        (job.get("downloadUrl"), folder / csv_name),
        (job.get("errorsUrl"), folder / errors_name),
    ]
    if folder.exists() and not folder.is_dir():
        raise CliError(Exit.USAGE, f"--out: {folder} is not a folder.")
    if not force:
        present = [str(path) for _, path in targets if path.exists()]
        if present:
            raise CliError(
                Exit.USAGE,
                f"{' and '.join(present)} already exist{'s' if len(present) == 1 else ''}; "
                "pass --force to overwrite, or choose another --out.",
            )
    for url, path in targets:
        if not isinstance(url, str):
            raise CliError(Exit.UNREACHABLE, f"the app gave no download URL for {path.name}.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            client.download(url, path)
        except OSError as error:
            raise CliError(
                Exit.USAGE, f"--out: cannot write {path}: {error.strerror or error}"
            ) from None
    return targets[0][1].resolve(), targets[1][1].resolve()
