"""A tenant that changes while the simulator runs: an overlay over the generated or file tenant.

Users are addressed by a stable object index (oid): the base tenant's users keep their index
(0..N-1), created users get N, N+1, ... Only what changed is held in memory: the changed and
created users, the soft-deleted and purged sets, and the listing order's exceptions (base
users not at their place, the tail of created and restored users). With no change the listing
is range(N) and every read goes straight to the base tenant, as before writes existed.

Listing order: the base tenant's order minus removed and moved users, then the tail (created
and restored users in the order they were appended). An updated user keeps its place.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .tenant import Tenant

_TAIL_RANK = 1 << 40  # ranks of tail users sort after every base index
# Kinds of change-log entries (LiveTenant.log_meta)
CREATE, UPDATE, DELETE, RESTORE, PURGE = "create", "update", "delete", "restore", "purge"


@dataclass(frozen=True)
class Change:
    """One change, as the caches see it: the user before and after (None: not listed)."""

    oid: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class LiveTenant(Tenant):
    """The served tenant: the base tenant plus the changes made through Graph's write APIs."""

    # Rebound to the base tenant's methods while nothing changed: no per-user overhead then.
    user: Callable[[int], dict[str, Any]]  # type: ignore[assignment]
    lite: Callable[[int], dict[str, Any]]  # type: ignore[assignment]

    def __init__(self, base: Tenant) -> None:
        self.base = base
        self.tenant_id = base.tenant_id
        self.directory = base.directory
        self.base_count = len(base)
        self.users_changed: dict[int, dict[str, Any]] = {}  # oid -> current full user
        self._keys: dict[str, int] = {}  # lower id/UPN of changed users -> oid
        self._hidden: list[int] = []  # sorted base oids not at their base place
        self._hidden_set: set[int] = set()
        self._tail: list[int] = []  # oids listed after the base users, in order
        self._tail_seq: dict[int, int] = {}  # oid -> its append number (its rank in the tail)
        self._appended = 0
        self.deleted: dict[int, str] = {}  # soft-deleted oid -> deletedDateTime, in order
        self.purged: set[int] = set()
        self.removed_base: set[int] = set()  # base oids deleted or purged (member lists)
        self._created = 0
        self.created_seq: dict[int, int] = {}  # created oid -> the change number creating it
        # The change log: entry k is change number k+1; delta rounds read slices of it.
        self.log: list[int] = []
        # Next to each entry: its kind and the property names it touched (None: all of them,
        # as a create or restore sets every property), for delta's partial items.
        self.log_meta: list[tuple[str, frozenset[str] | None]] = []
        self.user = base.user
        self.lite = base.lite

    # ------------------------------------------------------------------ reads
    @property
    def seq(self) -> int:
        """The number of changes made so far (what a delta token records)."""
        return len(self.log)

    @property
    def changed(self) -> bool:
        return bool(self.log)

    def __len__(self) -> int:
        return self.base_count - len(self._hidden) + len(self._tail)

    def _user_overlay(self, oid: int) -> dict[str, Any]:
        user = self.users_changed.get(oid)
        return user if user is not None else self.base.user(oid)

    def _lite_overlay(self, oid: int) -> dict[str, Any]:
        user = self.users_changed.get(oid)
        return user if user is not None else self.base.lite(oid)

    def user_id(self, index: int) -> str:
        return str(self.lite(index)["id"])

    def listed(self, oid: int) -> bool:
        if oid in self._tail_seq:
            return True
        return oid < self.base_count and oid not in self._hidden_set

    def rank(self, oid: int) -> int:
        """A key that sorts oids in listing order."""
        seq = self._tail_seq.get(oid)
        return oid if seq is None else _TAIL_RANK + seq

    def listing(self, start: int, stop: int) -> Iterable[int]:
        """The oids at listing positions start..stop-1."""
        total = len(self)
        stop = min(stop, total)
        if start >= stop:
            return ()
        if not self._hidden and not self._tail:
            return range(start, stop)
        return list(self._listing(start, stop))

    def _listing(self, start: int, stop: int) -> Iterator[int]:
        in_base = self.base_count - len(self._hidden)
        if start < in_base:
            hidden = self._hidden
            # j hidden oids lie before the answer: the smallest j with hidden[j] - j > start.
            j = bisect.bisect_right(range(len(hidden)), start, key=lambda k: hidden[k] - k)
            oid = start + j
            n = min(stop, in_base) - start
            while n > 0:
                if j < len(hidden) and hidden[j] == oid:
                    j += 1
                else:
                    yield oid
                    n -= 1
                oid += 1
        if stop > in_base:
            yield from self._tail[max(0, start - in_base) : stop - in_base]

    def find_index(self, key: str) -> int | None:
        low = key.lower()
        oid = self._keys.get(low)
        if oid is None:
            oid = self.base.find_index(key)
            if oid is None:
                return None
            changed = self.users_changed.get(oid)
            if changed is not None and low not in (
                str(changed.get("id")).lower(),
                str(changed.get("userPrincipalName") or "").lower(),
            ):
                return None  # found by a value the user no longer has
        return oid

    def find(self, key: str) -> dict[str, Any] | None:
        oid = self.find_index(key)
        return None if oid is None or not self.listed(oid) else self.user(oid)

    def find_deleted(self, key: str) -> int | None:
        """The soft-deleted user with id `key`."""
        oid = self.find_index(key)
        return oid if oid is not None and oid in self.deleted else None

    def deleted_users(self) -> list[dict[str, Any]]:
        return [self.users_changed[oid] for oid in self.deleted]

    # ------------------------------------------------------------------ writes
    def _changing(self) -> None:
        if not self.log:  # from now on reads must see the overlay
            self.user = self._user_overlay
            self.lite = self._lite_overlay

    def _record(self, oid: int, kind: str, touched: frozenset[str] | None = None) -> None:
        self.log.append(oid)
        self.log_meta.append((kind, touched))

    def _index_keys(self, oid: int, user: dict[str, Any] | None, add: bool) -> None:
        if user is None:
            return
        for value in (user.get("id"), user.get("userPrincipalName")):
            if isinstance(value, str):
                if add:
                    self._keys[value.lower()] = oid
                elif self._keys.get(value.lower()) == oid:
                    del self._keys[value.lower()]

    def _set_user(self, oid: int, user: dict[str, Any]) -> None:
        self._index_keys(oid, self.users_changed.get(oid), False)
        self.users_changed[oid] = user
        self._index_keys(oid, user, True)

    def _append(self, oid: int) -> None:
        if oid < self.base_count and oid not in self._hidden_set:
            bisect.insort(self._hidden, oid)
            self._hidden_set.add(oid)
        self._tail.append(oid)
        self._tail_seq[oid] = self._appended
        self._appended += 1

    def _unlist(self, oid: int) -> None:
        if oid in self._tail_seq:
            del self._tail_seq[oid]
            self._tail.remove(oid)
        elif oid not in self._hidden_set:
            bisect.insort(self._hidden, oid)
            self._hidden_set.add(oid)

    def create(self, user: dict[str, Any]) -> Change:
        self._changing()
        oid = self.base_count + self._created
        self._created += 1
        self._set_user(oid, user)
        self._append(oid)
        self._record(oid, CREATE)
        self.created_seq[oid] = self.seq
        return Change(oid, None, user)

    def update(self, oid: int, properties: dict[str, Any]) -> Change:
        self._changing()
        before = self.user(oid)
        after = dict(before) | properties
        self._set_user(oid, after)
        self._record(oid, UPDATE, frozenset(properties))
        return Change(oid, before, after)

    def delete(self, oid: int) -> Change:
        self._changing()
        before = self.user(oid)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._set_user(oid, dict(before) | {"deletedDateTime": when})
        self._unlist(oid)
        self.deleted[oid] = when
        if oid < self.base_count:
            self.removed_base.add(oid)
        self._record(oid, DELETE)
        return Change(oid, before, None)

    def restore(self, oid: int) -> Change:
        self._changing()
        del self.deleted[oid]
        self.removed_base.discard(oid)
        user = dict(self.users_changed[oid])
        user["deletedDateTime"] = None
        self._set_user(oid, user)
        self._append(oid)
        self._record(oid, RESTORE)
        return Change(oid, None, user)

    def purge(self, oid: int) -> Change:
        self._changing()
        del self.deleted[oid]
        self.purged.add(oid)
        # The user's values are no longer needed, only that the oid is gone for good.
        self._index_keys(oid, self.users_changed.get(oid), False)
        self.users_changed[oid] = {"id": self.users_changed[oid].get("id")}
        self._record(oid, PURGE)
        return Change(oid, None, None)
