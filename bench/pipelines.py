"""The measured pipelines, run inside a child process (bench.child), one per process.

All three export the same users and columns: the admin center's 25 columns minus the two
authentication columns (23 profile columns, no per-user lookups), so the work is CPU-bound.
Each starts its clock after the token is fetched and the client is built, so start-up costs
(imports, the first token) do not count, as they do not grow with the tenant.
"""

from __future__ import annotations

import asyncio
import cProfile
import csv
import hashlib
import io
import os
import pstats
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import httpx
import orjson
import psutil

from userexport.columns import ADMIN_CENTER_COLUMNS, Column, graph_select, lookups
from userexport.csvfile import BOM, CsvEncoder, guard

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_RESOURCE = "https://graph.microsoft.com"
PAGE_SIZE = 999  # Graph's maximum $top for users, as the product uses

# The profile columns: no column that needs a per-user authentication-method request.
PROFILE_COLUMNS: tuple[Column, ...] = tuple(c for c in ADMIN_CENTER_COLUMNS if c.lookup is None)
assert not lookups(PROFILE_COLUMNS) and len(PROFILE_COLUMNS) == 23


@dataclass(frozen=True)
class Spec:
    """What the parent asks a child to run (passed as JSON on the command line)."""

    part: str  # "a" pipeline, "b" SDK models, "c" raw ceiling
    graph: str  # the simulator's /v1.0 base URL
    identity: str  # its managed identity endpoint
    identity_header: str
    users: int  # stop after this many users (whole pages for "b")
    sink: str  # "file" (a temp file, like blob staging) or "discard" (count the bytes)
    sink_dir: str
    profile: bool = False


@dataclass
class Measured:
    """What a child reports back, as one JSON line on stdout."""

    part: str
    users: int = 0
    pages: int = 0
    seconds: float = 0.0  # wall time of the timed loop
    cpu_seconds: float = 0.0  # this process's user+system CPU during the loop
    bytes: int = 0  # CSV bytes produced, header included
    sha256: str = ""  # of the CSV file (sink "file" only), computed after the clock stops
    rss_before_mb: float = 0.0  # after imports and client set-up, before the first page
    rss_after_mb: float = 0.0
    peak_rss_mb: float = 0.0  # ru_maxrss of this process: the pipeline's own peak
    profile: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Discard(io.RawIOBase):
    """A sink that only counts: measures encoding without any I/O."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.count += n
        return n


class Sink:
    """Where CSV bytes go: a temp file (closer to staging blocks) or a byte counter."""

    def __init__(self, spec: Spec) -> None:
        self.path = os.path.join(spec.sink_dir, f"part-{spec.part}.csv")
        self._discard = Discard() if spec.sink == "discard" else None
        raw: Any = self._discard if self._discard is not None else open(self.path, "wb")
        self.binary: BinaryIO = io.BufferedWriter(raw, buffer_size=1 << 20)

    def close(self) -> int:
        """Flushes and closes; the number of bytes written."""
        self.binary.close()
        if self._discard is not None:
            return self._discard.count
        return os.path.getsize(self.path)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _timed(
    loop: Callable[[], Awaitable[tuple[int, int]]], result: Measured, spec: Spec
) -> None:
    """Runs the page loop under the clocks (and cProfile when asked)."""
    # The default (wall) timer: a CPU timer costs a syscall per call and distorts more;
    # time spent waiting for the simulator shows up as select.epoll.poll.
    profiler = cProfile.Profile() if spec.profile else None
    result.rss_before_mb = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    try:
        result.users, result.pages = await loop()
    finally:
        if profiler is not None:
            profiler.disable()
    result.seconds = time.perf_counter() - wall
    result.cpu_seconds = time.process_time() - cpu
    result.rss_after_mb = _rss_mb()
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(10)
        result.profile = text.getvalue()


# --------------------------------------------------------------------------- (a) our pipeline
async def run_pipeline(spec: Spec, sink: Sink, result: Measured) -> None:
    """GraphReader (SDK request adapter, raw bytes, orjson) -> CsvEncoder -> sink."""
    from azure.identity.aio import ManagedIdentityCredential
    from msgraph import GraphServiceClient

    from userexport.graph import GraphReader

    credential = ManagedIdentityCredential()
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = spec.graph
        await credential.get_token(GRAPH_SCOPE)  # cached: the SDK's requests reuse it
        reader = GraphReader(client)
        encoder = CsvEncoder(PROFILE_COLUMNS)
        select = graph_select(PROFILE_COLUMNS)
        write = sink.binary.write
        write(encoder.header())

        async def loop() -> tuple[int, int]:
            # As a partition does (partition.py): the next page is fetched, as bytes, while
            # this one is encoded and written.
            users = pages = 0
            ahead = asyncio.ensure_future(reader.users_page_bytes(next_link=None, select=select))
            while ahead is not None:
                page = (await ahead).parse()
                users += len(page.users)
                pages += 1
                more = page.next_link and users < spec.users
                ahead = (
                    asyncio.ensure_future(
                        reader.users_page_bytes(next_link=page.next_link, select=select)
                    )
                    if more
                    else None
                )
                write(encoder.rows(page.users, {}))
            return users, pages

        await _timed(loop, result, spec)
    finally:
        await credential.close()


# ----------------------------------------------------------------- (b) the SDK's documented way
# CSV column -> the Kiota User attribute it reads, as someone following the SDK docs writes it.
_MODEL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "userPrincipalName": lambda u: u.user_principal_name,
    "displayName": lambda u: u.display_name,
    "surname": lambda u: u.surname,
    "mail": lambda u: u.mail,
    "givenName": lambda u: u.given_name,
    "objectId": lambda u: u.id,
    "userType": lambda u: u.user_type,
    "jobTitle": lambda u: u.job_title,
    "department": lambda u: u.department,
    "accountEnabled": lambda u: u.account_enabled,
    "usageLocation": lambda u: u.usage_location,
    "streetAddress": lambda u: u.street_address,
    "state": lambda u: u.state,
    "country": lambda u: u.country,
    "physicalDeliveryOfficeName": lambda u: u.office_location,
    "city": lambda u: u.city,
    "postalCode": lambda u: u.postal_code,
    "telephoneNumber": lambda u: u.business_phones[0] if u.business_phones else None,
    "mobile": lambda u: u.mobile_phone,
    "alternateEmailAddress": lambda u: ";".join(u.other_mails or []),
    "ageGroup": lambda u: u.age_group,
    "consentProvidedForMinor": lambda u: u.consent_provided_for_minor,
    "legalAgeGroupClassification": lambda u: u.legal_age_group_classification,
}
assert list(_MODEL_FIELDS) == [c.name for c in PROFILE_COLUMNS]


async def run_sdk_models(spec: Spec, sink: Sink, result: Measured) -> None:
    """client.users.get($select, $top=999) -> PageIterator -> Kiota User -> csv.DictWriter."""
    from azure.identity.aio import ManagedIdentityCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphServiceClient
    from msgraph.generated.models.user import User
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph_core.tasks.page_iterator import PageIterator

    # Whole pages only: a partly written page would time deserialisation of unwritten users.
    wanted = max(1, spec.users // PAGE_SIZE) * PAGE_SIZE
    credential = ManagedIdentityCredential()
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = spec.graph
        await credential.get_token(GRAPH_SCOPE)
        text = io.TextIOWrapper(sink.binary, encoding="utf-8-sig", newline="")
        writer = csv.DictWriter(text, fieldnames=list(_MODEL_FIELDS), lineterminator="\r\n")
        writer.writeheader()
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=graph_select(PROFILE_COLUMNS), top=PAGE_SIZE
        )
        config = RequestConfiguration(query_parameters=query)

        async def loop() -> tuple[int, int]:
            count = 0

            def write(user: User) -> bool:
                nonlocal count
                writer.writerow({name: get(user) for name, get in _MODEL_FIELDS.items()})
                count += 1
                return count < wanted  # False stops PageIterator before it fetches more

            first = await client.users.get(request_configuration=config)
            await PageIterator(first, client.request_adapter).iterate(write)
            return count, -(-count // PAGE_SIZE)

        await _timed(loop, result, spec)
        text.detach()  # Sink.close() closes the binary stream
    finally:
        await credential.close()


# ------------------------------------------------------------------- (c) ceiling without an SDK
_GUARD_FIRST = frozenset("=@\t\r+-")


def _ceiling_row(u: dict[str, Any]) -> list[Any]:
    g = u.get
    phones = g("businessPhones")
    row = [
        g("userPrincipalName"),
        g("displayName"),
        g("surname"),
        g("mail"),
        g("givenName"),
        g("id"),
        g("userType"),
        g("jobTitle"),
        g("department"),
        g("accountEnabled"),  # csv.writer writes True/False and None as "", like cell()
        g("usageLocation"),
        g("streetAddress"),
        g("state"),
        g("country"),
        g("officeLocation"),
        g("city"),
        g("postalCode"),
        phones[0] if phones else None,
        g("mobilePhone"),
        ";".join(g("otherMails") or ()),
        g("ageGroup"),
        g("consentProvidedForMinor"),
        g("legalAgeGroupClassification"),
    ]
    # The product's formula guard, called only where it can apply: the same bytes as (a).
    for i, v in enumerate(row):
        if v.__class__ is str and v and v[0] in _GUARD_FIRST:
            row[i] = guard(v)
    return row


async def run_raw_ceiling(spec: Spec, sink: Sink, result: Measured) -> None:
    """httpx.AsyncClient + orjson + csv.writer following @odata.nextLink; token fetched once."""
    select = ",".join(graph_select(PROFILE_COLUMNS))
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.get(
            spec.identity,
            params={"api-version": "2019-08-01", "resource": GRAPH_RESOURCE},
            headers={"X-IDENTITY-HEADER": spec.identity_header},
        )
        answer.raise_for_status()
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        write = sink.binary.write
        write(BOM + ",".join(c.name for c in PROFILE_COLUMNS).encode() + b"\r\n")

        async def loop() -> tuple[int, int]:
            users = pages = 0
            url: str | None = f"{spec.graph}/users?$select={select}&$top={PAGE_SIZE}"
            while url:
                response = await http.get(url, headers=headers)
                response.raise_for_status()
                body = orjson.loads(response.content)
                value = body["value"]
                writer.writerows(map(_ceiling_row, value))
                write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
                users += len(value)
                pages += 1
                url = body.get("@odata.nextLink") if users < spec.users else None
            return users, pages

        await _timed(loop, result, spec)


RUNNERS: dict[str, Callable[[Spec, Sink, Measured], Awaitable[None]]] = {
    "a": run_pipeline,
    "b": run_sdk_models,
    "c": run_raw_ceiling,
}


async def run(spec: Spec) -> Measured:
    result = Measured(spec.part)
    sink = Sink(spec)
    try:
        await RUNNERS[spec.part](spec, sink, result)
    finally:
        result.bytes = sink.close()
    result.peak_rss_mb = _peak_rss_mb()
    if spec.sink == "file":  # off the clock: lets the parent check (a) and (c) wrote the same
        digest = hashlib.sha256()
        with open(sink.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        result.sha256 = digest.hexdigest()
        os.remove(sink.path)
    return result
