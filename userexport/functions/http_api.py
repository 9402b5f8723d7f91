"""HTTP triggers: the exports API, its description, the column catalogue and the results page."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from .. import api, resultspage
from ..clients import get_clients
from ..idempotency import HEADER as IDEMPOTENCY_KEY

bp = func.Blueprint()
OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


def _links(req: func.HttpRequest) -> api.Links:
    parts = urlsplit(req.url)
    return api.Links(f"{parts.scheme}://{parts.netloc}", req.params.get("code"))


def _respond(response: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        response.json(),
        status_code=response.status,
        headers=response.headers,
        mimetype=response.content_type,
    )


@bp.route(route="exports", methods=["POST"])
async def start_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(
        await api.create_export(
            clients,
            body=req.get_body(),
            trigger="http",
            links=_links(req),
            idempotency_key=req.headers.get(IDEMPOTENCY_KEY),
        )
    )


@bp.route(route="exports/{id}", methods=["GET"])
async def get_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(await api.get_export(clients, req.route_params["id"], links=_links(req)))


@bp.route(route="exports/latest", methods=["GET"])
async def latest_export(req: func.HttpRequest) -> func.HttpResponse:
    """The newest export of a series (literal segments win over exports/{id} in the host's
    routing)."""
    clients = await get_clients()
    return _respond(await api.latest_export(clients, params=dict(req.params), links=_links(req)))


@bp.route(route="exports/{id}", methods=["DELETE"])
async def cancel_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(await api.cancel_export(clients, req.route_params["id"], links=_links(req)))


@bp.route(route="exports", methods=["GET"])
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(await api.list_exports(clients, params=dict(req.params), links=_links(req)))


@bp.route(route="columns", methods=["GET"])
def list_columns(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.list_columns())


@cache
def _openapi() -> bytes:
    return OPENAPI.read_bytes()


@bp.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_openapi(), mimetype="application/json")


@bp.route(route="ui", methods=["GET"])
def results_page(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        resultspage.html(),
        mimetype="text/html",
        headers={
            "Content-Security-Policy": resultspage.CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
