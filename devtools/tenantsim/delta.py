"""GET /users/delta: the state a round carries in its tokens, and what a round returns.

A token records the change number (LiveTenant.seq) it stands for, so following a deltaLink
reads the slice of the change log made after it; the current values of those users are
returned, so a user changed several times appears once.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .live import CREATE, RESTORE, UPDATE, LiveTenant
from .odata import ODataError

INITIAL = "i"  # a $skiptoken of an initial round: position in the listing
CHANGES = "c"  # a $skiptoken of a changes round: position in the round's changes
DELTA = "d"  # a $deltatoken: changes after `since`

EXPIRED_CODE = "syncStateNotFound"
EXPIRED_MESSAGE = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)
# errors.md's code for a delta token the app must reset (deltaExpiredAnswer resyncRequired/gone)
RESYNC_CODE = "resyncRequired"
RESYNC_MESSAGE = "The delta token is no longer valid, and the app must reset the sync state."
# A $select naming a property delta does not support (microsoft-graph-explorer-v4#3189)
REFUSED_MESSAGE = (
    "Invalid request for delta query: for this entity set, $expand/$select is not supported "
    "for the following properties: {}"
)
REMOVED_CHANGED = "changed"  # soft-deleted: restorable
REMOVED_DELETED = "deleted"  # permanently deleted


@dataclass(frozen=True)
class DeltaToken:
    """What a delta round's $skiptoken or $deltatoken carries."""

    kind: str  # INITIAL, CHANGES or DELTA
    since: int  # INITIAL: the change number when the round started; else the last one seen
    until: int  # CHANGES: the last change number of the round
    position: int
    select: tuple[str, ...] | None
    only: str | None  # $filter=id eq '<guid>': the one user the round follows
    issued: float  # epoch seconds
    serial: int  # lets /_sim/faults expire every delta token issued so far

    def encode(self) -> str:
        payload = orjson.dumps(
            {
                "v": 1,
                "k": self.kind,
                "s": self.since,
                "u": self.until,
                "p": self.position,
                "sel": list(self.select) if self.select is not None else None,
                "f": self.only,
                "t": self.issued,
                "n": self.serial,
            }
        )
        return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str, kinds: tuple[str, ...]) -> DeltaToken:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            sel = data["sel"]
            out = cls(
                str(data["k"]),
                int(data["s"]),
                int(data["u"]),
                int(data["p"]),
                tuple(str(s) for s in sel) if sel is not None else None,
                str(data["f"]) if data["f"] is not None else None,
                float(data["t"]),
                int(data["n"]),
            )
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            out = None
        if out is None or out.kind not in kinds:
            raise ODataError(400, "Request_BadRequest", "The delta token is not valid.")
        return out

    def at(self, kind: str, position: int, serial: int, issued: float, **kw: Any) -> DeltaToken:
        return replace(self, kind=kind, position=position, serial=serial, issued=issued, **kw)


def round_changes(
    tenant: LiveTenant, since: int, until: int, only: int | None
) -> list[tuple[int, str | None]]:
    """The users changed in (since, until]: (oid, None) for those listed now, in listing
    order, then (oid, removal reason) for the removed ones in the order they changed. A user
    created and removed within the slice never existed for the client: left out."""
    seen: dict[int, None] = {}
    for oid in tenant.log[since:until]:
        if only is None or oid == only:
            seen[oid] = None
    listed = [oid for oid in seen if tenant.listed(oid)]
    listed.sort(key=tenant.rank)
    out: list[tuple[int, str | None]] = [(oid, None) for oid in listed]
    for oid in seen:
        if tenant.listed(oid) or tenant.created_seq.get(oid, 0) > since:
            continue
        out.append((oid, REMOVED_DELETED if oid in tenant.purged else REMOVED_CHANGED))
    return out


def round_touched(
    tenant: LiveTenant, since: int, until: int
) -> tuple[dict[int, frozenset[str] | None], set[int]]:
    """What the changes in (since, until] did to each user: the property names its updates
    touched (None: created or restored, so every property is new to the client), and the
    users whose last change of the slice is a restore not followed by an update (the ones a
    round with $select leaves out under deltaSkipsRestored)."""
    touched: dict[int, frozenset[str] | None] = {}
    restored: set[int] = set()
    for oid, (kind, props) in zip(
        tenant.log[since:until], tenant.log_meta[since:until], strict=True
    ):
        if kind in (CREATE, RESTORE):
            touched[oid] = None
            if kind == RESTORE:
                restored.add(oid)
        elif kind == UPDATE:
            restored.discard(oid)
            before = touched.get(oid, frozenset())
            if before is not None and props is not None:
                touched[oid] = before | props
    return touched, restored
