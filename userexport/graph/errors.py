"""Graph's answers that are not users: GraphError (status, code, what Graph said about its
budget), made from kiota's APIError.
"""

from __future__ import annotations

from kiota_abstractions.api_error import APIError

from ..errors import UserExportError
from .headers import about_budget, retry_after_seconds, used_share

EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
# Graph's answer to signInActivity in a tenant without Entra ID P1/P2, which premium tenants
# also get "occasionally" (9 times in 10 for one reporter: microsoft-graph-docs #14118,
# microsoft-graph-docs-contrib #3033): retried for USEREXPORT_STORM_SECONDS before believed.
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


class GraphError(UserExportError):
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
        self.budget = budget  # a 429 about the resource-unit budget (headers.about_budget)

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
