"""HTTP triggers: the exports API, its description, the column catalogue and the results page.

Every route first learns who calls (caller.identify: at the anonymous level, an identity of
the allow-list, else 401) and refuses what a browser on another site sends (`Sec-Fetch-Site:
cross-site`, 403); POST takes at most MAX_BODY bytes of `application/json` (413, 415) before
anything is parsed. Every answer says `Cache-Control: no-store`: they carry SAS URLs and
links with the caller's `code`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from .. import api, resultspage
from ..caller import Caller, identify
from ..clients import Clients, get_clients
from ..errors import Unauthorized
from ..idempotency import HEADER as IDEMPOTENCY_KEY

bp = func.Blueprint()
OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"
MAX_BODY = 64 * 1024  # an export request is a few hundred bytes; every column named, about 4 KiB
NO_STORE = {"Cache-Control": "no-store"}


def _links(req: func.HttpRequest) -> api.Links:
    parts = urlsplit(req.url)
    return api.Links(f"{parts.scheme}://{parts.netloc}", req.params.get("code"))


def _respond(response: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        response.json(),
        status_code=response.status,
        headers={**response.headers, **NO_STORE},
        mimetype=response.content_type,
    )


def _admit(
    req: func.HttpRequest, clients: Clients, *, page: bool = False
) -> Caller | func.HttpResponse:
    """The request's caller, or the answer that refuses it. The results page (`page`) may be
    opened from a link on another site (a chat, a mail): a navigation reads nothing for that
    site, and the page's own calls are same-origin."""
    cross_site = req.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
    navigation = req.headers.get("Sec-Fetch-Mode", "").strip().lower() == "navigate"
    if cross_site and not (page and navigation):
        return _respond(
            api.problem(
                403,
                "Cross-site request",
                "A browser sent this request from another site (Sec-Fetch-Site: cross-site): "
                "the API answers its own results page and callers that are not browsers.",
                field="Sec-Fetch-Site",
            )
        )
    try:
        return identify(req.headers, code=req.params.get("code"), settings=clients.settings)
    except Unauthorized as refused:
        return _respond(api.problem(401, "Not an allowed caller", str(refused)))


def _body(req: func.HttpRequest) -> bytes | func.HttpResponse:
    """POST's body, or the answer that refuses it unread: too large (413), or not JSON (415;
    an empty body, which means the defaults, needs no Content-Type)."""
    declared = req.headers.get("Content-Length", "").strip()
    if (declared.isdigit() and int(declared) > MAX_BODY) or len(body := req.get_body()) > MAX_BODY:
        return _respond(
            api.problem(
                413,
                "Request too large",
                f"The body is larger than {MAX_BODY // 1024} KiB; an export request is a few "
                "hundred bytes.",
                field="body",
            )
        )
    media = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if body and media != "application/json":
        return _respond(
            api.problem(
                415,
                "Unsupported media type",
                f"Content-Type must be application/json, not {media or 'absent'!r}.",
                field="Content-Type",
            )
        )
    return body


@bp.route(route="exports", methods=["POST"])
async def start_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    body = _body(req)
    if isinstance(body, func.HttpResponse):
        return body
    return _respond(
        await api.create_export(
            clients,
            body=body,
            trigger="http",
            links=_links(req),
            caller=caller,
            idempotency_key=req.headers.get(IDEMPOTENCY_KEY),
        )
    )


@bp.route(route="exports/{id}", methods=["GET"])
async def get_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    return _respond(
        await api.get_export(clients, req.route_params["id"], links=_links(req), caller=caller)
    )


@bp.route(route="exports/latest", methods=["GET"])
async def latest_export(req: func.HttpRequest) -> func.HttpResponse:
    """The newest export of a series (literal segments win over exports/{id} in the host's
    routing)."""
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    return _respond(
        await api.latest_export(clients, params=dict(req.params), links=_links(req), caller=caller)
    )


@bp.route(route="exports/latest/{file}", methods=["GET"])
async def latest_file(req: func.HttpRequest) -> func.HttpResponse:
    """302 to the named file of a series' newest export (users.csv, changes.csv, errors.csv)."""
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    return _respond(
        await api.latest_file(
            clients,
            req.route_params["file"],
            params=dict(req.params),
            links=_links(req),
            caller=caller,
        )
    )


@bp.route(route="exports/{id}", methods=["DELETE"])
async def cancel_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    return _respond(
        await api.cancel_export(clients, req.route_params["id"], links=_links(req), caller=caller)
    )


@bp.route(route="exports", methods=["GET"])
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    caller = _admit(req, clients)
    if isinstance(caller, func.HttpResponse):
        return caller
    return _respond(await api.list_exports(clients, params=dict(req.params), links=_links(req)))


@bp.route(route="columns", methods=["GET"])
async def list_columns(req: func.HttpRequest) -> func.HttpResponse:
    caller = _admit(req, await get_clients())
    return caller if isinstance(caller, func.HttpResponse) else _respond(api.list_columns())


@cache
def _openapi() -> bytes:
    return OPENAPI.read_bytes()


@bp.route(route="openapi.json", methods=["GET"])
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    caller = _admit(req, await get_clients())
    if isinstance(caller, func.HttpResponse):
        return caller
    return func.HttpResponse(_openapi(), mimetype="application/json", headers=NO_STORE)


# The page holds no data, only code that calls the API with the key it was first opened with
# (kept in the tab, out of the address bar): a reload without `?code=` must still load it.
@bp.route(route="ui", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def results_page(req: func.HttpRequest) -> func.HttpResponse:
    caller = _admit(req, await get_clients(), page=True)
    if isinstance(caller, func.HttpResponse):
        return caller
    return func.HttpResponse(
        resultspage.html(),
        mimetype="text/html",
        headers={
            "Content-Security-Policy": resultspage.CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            **NO_STORE,
        },
    )
