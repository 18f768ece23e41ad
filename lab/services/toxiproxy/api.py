"""Toxiproxy's v2 HTTP API over `ProxyCollection`: routes, bodies, status codes, errors.

Status codes and shapes follow upstream (Shopify/toxiproxy `api.go`): creating a proxy is 201,
creating a toxic is 200, deletes and `/reset` are 204, `/populate` is 201 with
`{"proxies": [...]}`; errors are `{"error": "...", "status": N}` sent as text/plain like Go's
`http.Error`; an unknown path is 404 "404 page not found", a known path with another method 405.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import gojson
from .errors import BAD_REQUEST_BODY, MISSING_FIELD, ApiError
from .http import Request, Response
from .proxy import ProxyCollection, ProxySpec
from .toxics import decode_attributes, parse_new_toxic, parse_toxic_update

_logger = logging.getLogger(__name__)

VERSION = "2.12.0"
"""The upstream release whose API this server follows; `/version` reports it."""

_JSON = ("Content-Type", "application/json")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"

Route = Callable[["Api", Request, dict[str, str]], Awaitable[Response]]


def _json(status: int, value: object) -> Response:
    return Response(status, gojson.encode(value), [_JSON])


def _error(exc: ApiError) -> Response:
    # Go's http.Error: the JSON text, a newline, and a text/plain content type.
    return Response(
        exc.status,
        gojson.encode(exc.to_json()) + b"\n",
        [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
    )


def _decode_proxy_fields(body: bytes, defaults: ProxySpec) -> ProxySpec:
    try:
        raw = gojson.expect_object(gojson.decode(body), "toxiproxy.Proxy") or {}
        return ProxySpec(
            name=gojson.get_str(raw, "name", defaults.name, "Proxy"),
            listen=gojson.get_str(raw, "listen", defaults.listen, "Proxy"),
            upstream=gojson.get_str(raw, "upstream", defaults.upstream, "Proxy"),
            enabled=gojson.get_bool(raw, "enabled", defaults.enabled, "Proxy"),
        )
    except gojson.DecodeError as exc:
        raise BAD_REQUEST_BODY.error(str(exc)) from exc


def parse_populate(body: bytes) -> list[ProxySpec]:
    """The proxies of a `/populate` body (or a `-config` file), checked before any is made.

    Raises:
        ApiError: 400 for a bad body or a proxy without name or upstream.
    """
    try:
        value = gojson.decode(body)
        if value is not None and not isinstance(value, list):
            raise gojson.DecodeError(
                f"json: cannot unmarshal {gojson.json_type(value)} into Go value of type "
                '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
            )
        specs: list[ProxySpec] = []
        for item in value or []:
            raw = gojson.expect_object(item, "toxiproxy.Proxy") or {}
            specs.append(
                ProxySpec(
                    name=gojson.get_str(raw, "name", "", "Proxy"),
                    listen=gojson.get_str(raw, "listen", "", "Proxy"),
                    upstream=gojson.get_str(raw, "upstream", "", "Proxy"),
                    enabled=gojson.get_bool(raw, "enabled", True, ".enabled"),
                )
            )
    except gojson.DecodeError as exc:
        raise BAD_REQUEST_BODY.error(str(exc)) from exc
    for index, spec in enumerate(specs, start=1):
        if not spec.name:
            raise MISSING_FIELD.error(f"name at proxy {index}")
        if not spec.upstream:
            raise MISSING_FIELD.error(f"upstream at proxy {index}")
    return specs


class Api:
    """The HTTP handler. Changes are serialized by one lock, as upstream's mutexes do."""

    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection
        self._lock = asyncio.Lock()

    async def handle(self, request: Request) -> Response:
        started = time.monotonic()
        response = await self._dispatch(request)
        _logger.info(
            "api %s %s -> %d (%d bytes, %.1f ms) client=%s user_agent=%r",
            request.method,
            request.target,
            response.status,
            len(response.body),
            (time.monotonic() - started) * 1000,
            request.client,
            request.headers.get("user-agent", ""),
        )
        return response

    async def _dispatch(self, request: Request) -> Response:
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            route = methods.get(request.method)
            if route is None:
                return Response(405)
            if request.headers.get("user-agent", "").startswith("Mozilla/"):
                return Response(
                    403,
                    b"User agent not allowed\n",
                    [("Content-Type", "text/plain; charset=utf-8")],
                )
            request_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))
            try:
                async with self._lock:
                    response = await route(self, request, match.groupdict())
            except ApiError as exc:
                response = _error(exc)
            response.headers.append(("X-Toxiproxy-Request-Id", request_id))
            return response
        return Response(
            404, b"404 page not found\n", [("Content-Type", "text/plain; charset=utf-8")]
        )

    # -- proxies --------------------------------------------------------------------------

    async def proxy_index(self, request: Request, params: dict[str, str]) -> Response:
        proxies = self.collection.all()
        return _json(200, {name: proxies[name].to_json() for name in sorted(proxies)})

    async def proxy_create(self, request: Request, params: dict[str, str]) -> Response:
        spec = _decode_proxy_fields(request.body, ProxySpec("", "", "", True))
        if not spec.name:
            raise MISSING_FIELD.error("name")
        if not spec.upstream:
            raise MISSING_FIELD.error("upstream")
        proxy = await self.collection.add(spec)
        return _json(201, proxy.to_json())

    async def proxy_show(self, request: Request, params: dict[str, str]) -> Response:
        return _json(200, self.collection.get(params["proxy"]).to_json())

    async def proxy_update(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        current = ProxySpec(proxy.name, proxy.listen, proxy.upstream, proxy.enabled)
        spec = _decode_proxy_fields(request.body, current)
        await proxy.update(spec.listen, spec.upstream, spec.enabled)
        return _json(200, proxy.to_json())

    async def proxy_delete(self, request: Request, params: dict[str, str]) -> Response:
        self.collection.remove(params["proxy"])
        return Response(204)

    async def populate(self, request: Request, params: dict[str, str]) -> Response:
        try:
            specs = parse_populate(request.body)
        except ApiError as exc:
            return _json(exc.status, {**exc.to_json(), "proxies": None})
        done, error = await self.collection.populate(specs)
        body: dict[str, Any] = {} if error is None else error.to_json()
        # Go marshals an empty slice of proxies here as null.
        body["proxies"] = [proxy.to_json() for proxy in done] or None
        return _json(201 if error is None else error.status, body)

    async def reset(self, request: Request, params: dict[str, str]) -> Response:
        for proxy in self.collection.all().values():
            await proxy.start()
            proxy.toxics.reset()
        return Response(204)

    # -- toxics ---------------------------------------------------------------------------

    async def toxic_index(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        return _json(200, [toxic.to_json() for toxic in proxy.toxics.all()])

    async def toxic_create(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        toxic, raw_attributes = parse_new_toxic(request.body)
        proxy.toxics.check_new_name(toxic.name)
        toxic.attributes = decode_attributes(toxic.type, raw_attributes)
        proxy.toxics.add(toxic)
        return _json(200, toxic.to_json())

    async def toxic_show(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        return _json(200, proxy.toxics.get(params["toxic"]).to_json())

    async def toxic_update(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        toxic = proxy.toxics.get(params["toxic"])
        attributes, toxicity = parse_toxic_update(request.body, toxic)
        proxy.toxics.update(toxic, attributes, toxicity)
        return _json(200, toxic.to_json())

    async def toxic_delete(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        proxy.toxics.remove(params["toxic"])
        return Response(204)

    async def version(self, request: Request, params: dict[str, str]) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        return Response(200, body, [("Content-Type", "application/json;charset=utf-8")])


_NAME = r"[^/]+"
_ROUTES: list[tuple[re.Pattern[str], dict[str, Route]]] = [
    (re.compile(r"/reset"), {"POST": Api.reset}),
    (re.compile(r"/proxies"), {"GET": Api.proxy_index, "POST": Api.proxy_create}),
    (re.compile(r"/populate"), {"POST": Api.populate}),
    (
        re.compile(rf"/proxies/(?P<proxy>{_NAME})"),
        {
            "GET": Api.proxy_show,
            "POST": Api.proxy_update,
            "PATCH": Api.proxy_update,
            "DELETE": Api.proxy_delete,
        },
    ),
    (
        re.compile(rf"/proxies/(?P<proxy>{_NAME})/toxics"),
        {"GET": Api.toxic_index, "POST": Api.toxic_create},
    ),
    (
        re.compile(rf"/proxies/(?P<proxy>{_NAME})/toxics/(?P<toxic>{_NAME})"),
        {
            "GET": Api.toxic_show,
            "POST": Api.toxic_update,
            "PATCH": Api.toxic_update,
            "DELETE": Api.toxic_delete,
        },
    ),
    (re.compile(r"/version"), {"GET": Api.version}),
]
