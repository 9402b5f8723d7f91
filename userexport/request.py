"""What a job was asked for: the typed request, serialised in one place.

Plain state with no dependency in the package: storage (jobs.py, series.py) records and reads
it without the POST body's parser (exportrequest.py), which makes one from a caller's JSON.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Self


@dataclass(frozen=True)
class ExportRequest:
    """What a job was asked for, validated; recorded on the job as camelCase JSON. A new
    request field is added here (its default, for jobs recorded before it) and checked in
    exportrequest.export_request."""

    columns: tuple[str, ...]
    filter: dict[str, Any] | None
    file_name: str
    formula_guard: bool = True
    # Plan and estimate only: the job ends `estimated`, with no files and no partitions.
    dry_run: bool = False
    series: str | None = None  # the named series the export belongs to (latest, retention)
    mode: str = "full"  # "delta": the changes since the series' last run (delta.py)
    snapshot: bool = False  # a delta run also hands out the full CSV rebuilt from the changes
    redefine: bool = False  # this run changes its series' definition on purpose (series.py)
    # Look up only users whose registration report row lists a phone or email method.
    fewer_lookups: bool = False

    @property
    def delta(self) -> bool:
        return self.mode == "delta"

    @property
    def errors_file_name(self) -> str:
        return f"{self.file_name.removesuffix('.csv')}-errors.csv"

    @property
    def changes_file_name(self) -> str:
        return f"{self.file_name.removesuffix('.csv')}-changes.csv"

    def to_json(self) -> dict[str, Any]:
        """The request as the API shows it and a job records it: its fields in camelCase."""
        data = {camel_case(f.name): getattr(self, f.name) for f in fields(self)}
        return {**data, "columns": list(self.columns)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """A recorded request; a field added since the job was recorded takes its default."""
        values = {
            f.name: data.get(camel_case(f.name), None if f.default is MISSING else f.default)
            for f in fields(cls)
        }
        return cls(**{**values, "columns": tuple(values["columns"])})


def camel_case(name: str) -> str:
    """A field's JSON name: file_name -> fileName."""
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# The POST body's fields: ExportRequest's, so a new field is added there (and checked in
# exportrequest.py).
FIELDS = tuple(camel_case(f.name) for f in fields(ExportRequest))
