"""Microsoft Graph, as the export reads it: one package for every request the app sends.

- reader.py: GraphReader, users through msgraph-sdk's request adapter as raw JSON pages;
- listing.py: UsersListing and its Position, a listing a checkpoint can resume;
- authmethods.py: the authentication methods, in $batches;
- registration.py: the registration report, a UPN-prefix range at a time;
- errors.py: GraphError; headers.py: what the headers of an answer say;
- meter.py: what a task asked of Graph (requests, 429s, resource units), for a job's telemetry;
- limiter.py: one bucket's adaptive limiter, made of concurrency.py, bucket.py, pause.py and
  latency.py; pace.py: what it shares with other instances.

It imports no storage and no export step: the shared pace is kept by whoever gives the limiter
a PaceBoard (userexport/pacestore.py).
"""

from .authmethods import (
    BATCH_SIZE,
    AuthMethodsReader,
    LookupFailure,
    LookupResult,
    LookupsCutShort,
    api_missing,
)
from .errors import EXPIRED_PAGE_TOKEN, NON_PREMIUM, GraphError
from .headers import retry_after_seconds
from .limiter import AdaptiveLimiter
from .listing import ListingStep, Position, UsersListing
from .meter import GraphUsage, metered
from .pace import PaceBoard, SharedPace
from .reader import ID_BATCH, GraphReader, RawPage, UsersPage, page_size
from .registration import (
    REPORT_PARTITIONS,
    REPORT_ROWS,
    RegistrationRefused,
    Report,
    check_report,
    needs_lookup,
    read_report,
)

__all__ = [
    "BATCH_SIZE",
    "EXPIRED_PAGE_TOKEN",
    "ID_BATCH",
    "NON_PREMIUM",
    "REPORT_PARTITIONS",
    "REPORT_ROWS",
    "AdaptiveLimiter",
    "AuthMethodsReader",
    "GraphError",
    "GraphReader",
    "GraphUsage",
    "ListingStep",
    "LookupFailure",
    "LookupResult",
    "LookupsCutShort",
    "PaceBoard",
    "Position",
    "RawPage",
    "RegistrationRefused",
    "Report",
    "SharedPace",
    "UsersListing",
    "UsersPage",
    "api_missing",
    "check_report",
    "metered",
    "needs_lookup",
    "page_size",
    "read_report",
    "retry_after_seconds",
]
