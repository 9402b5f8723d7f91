"""HTTP triggers: POST /api/exports, GET /api/exports, GET /api/exports/{id}."""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from .. import api
from ..clients import get_clients

bp = func.Blueprint()


def _base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


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
            clients, body=req.get_body(), trigger="http", base_url=_base_url(req)
        )
    )


@bp.route(route="exports/{id}", methods=["GET"])
async def get_export(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(await api.get_export(clients, req.route_params["id"], base_url=_base_url(req)))


@bp.route(route="exports", methods=["GET"])
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    clients = await get_clients()
    return _respond(
        await api.list_exports(clients, params=dict(req.params), base_url=_base_url(req))
    )
