"""Graph's answers that are not users: GraphError (status, code, what Graph said about its
budget) and the headers read from every answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from kiota_abstractions.api_error import APIError

from .limiter import about_budget, used_share

EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
# Graph's answer to signInActivity in a tenant without Entra ID P1/P2, which premium tenants
# also get "occasionally" (9 times in 10 for one reporter: microsoft-graph-docs #14118,
# microsoft-graph-docs-contrib #3033): retried for USEREXPORT_STORM_SECONDS before believed.
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


class GraphError(Exception):
    """Graph answered with an error after the SDK's retries."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        used: float | None = None,
        budget: bool = True,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.used = used  # x-ms-throttle-limit-percentage of a 429, when Graph sent it
        self.budget = budget  # a 429 about the resource-unit budget (limiter.about_budget)

    @property
    def transient(self) -> bool:
        """Worth another attempt later: throttling, timeouts, server errors, lost connections,
        and 424 Failed Dependency (json-batching.md: a batch's request failed because another
        did)."""
        return self.status is None or self.status in (408, 424, 429) or self.status >= 500

    @property
    def premium_refused(self) -> bool:
        """Graph's "no Entra ID P1/P2" for signInActivity, which it may not mean (NON_PREMIUM)."""
        return self.status == 403 and self.code == NON_PREMIUM

    @property
    def summary(self) -> str:
        """What happened, fit to show a caller: no host names, no SDK dump."""
        if self.status is None:
            return f"Microsoft Graph could not be reached ({self.code})"
        return f"Microsoft Graph answered {self.status} {self.code}"

    @classmethod
    def from_api_error(cls, error: APIError) -> GraphError:
        status = getattr(error, "response_status_code", None)
        code, message = "unknown", str(error.message or error)
        main = getattr(error, "error", None)
        if main is not None:
            code = main.code or code
            message = main.message or message
        headers = error.response_headers
        return cls(
            status,
            code,
            message,
            retry_after=retry_after_seconds(headers),
            used=used_share(headers),
            budget=about_budget(headers),
        )


def resource_units(headers: Mapping[str, str] | None) -> int:
    """x-ms-resource-unit: what the request cost (1 when Graph did not say)."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-ms-resource-unit":
            try:
                return max(1, int(float(value)))
            except (TypeError, ValueError):
                return 1
    return 1


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a Retry-After header asks to wait (any casing); None when absent or not a number
    (an HTTP date is rare from Graph: backing off instead is safe)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return min(max(0.0, seconds), 3600.0) if math.isfinite(seconds) else None
    return None
