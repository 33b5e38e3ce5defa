"""The KServe v2 / Triton HTTP application (Starlette): routes, error bodies, body limits, metrics."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import edge
from edge.serve.batcher import BatchingConfig, DynamicBatcher
from edge.serve.connections import ConnectionLimits
from edge.serve.metrics import ModelStats, TritonCollector, render_text
from edge.serve.model import ServedModel
from edge.serve.protocol import InferRequest, ServeError, decode_infer_request, encode_infer_response

__all__ = ["ServeConfig", "ServerState", "create_app", "EXTENSIONS"]

EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
_OFFLOAD_BYTES = 256 << 10  # decode/encode bigger payloads on a worker thread, not the event loop
_FAILURE_REASON = {503: "REJECTED", 500: "BACKEND"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServeConfig:
    """Server settings (the CLI's flags hold the user-facing defaults)."""

    host: str
    port: int
    batching: BatchingConfig
    max_body_bytes: int
    connections: ConnectionLimits
    drain_timeout_s: float = 30.0


class ServerState:
    """Models, their batchers and statistics, and the metrics sources of one app."""

    def __init__(self, models: Sequence[ServedModel], config: ServeConfig) -> None:
        self.config = config
        self.models = {m.name: m for m in models}
        if len(self.models) != len(models):
            names = [m.name for m in models]
            duplicate = next(n for n in names if names.count(n) > 1)
            raise ServeError(400, f"two models are both named '{duplicate}'; give each its own name (NAME=PATH)")
        self.stats = {m.name: ModelStats(m.name, m.version) for m in models}
        self.batchers: dict[str, DynamicBatcher] = {}
        self.ready = False
        self.collector = TritonCollector(lambda: self.stats.values())
        self.process_registry = CollectorRegistry()
        ProcessCollector(registry=self.process_registry)

    def model(self, request: Request) -> ServedModel:
        """The model a request's path names; 404 when unknown."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        model = self.models.get(name)
        if model is None:
            raise ServeError(404, f"unknown model '{name}'; serving {sorted(self.models)}")
        if not model.has_version(version):
            raise ServeError(404, f"model '{name}' has no version '{version}'; versions: ['{model.version}']")
        return model


def create_app(models: Sequence[ServedModel], config: ServeConfig) -> Starlette:
    """Build the ASGI app serving ``models``; batchers start and drain with its lifespan."""
    state = ServerState(models, config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for model in state.models.values():
            batcher = DynamicBatcher(model, state.config.batching, state.stats[model.name])
            await batcher.start()
            state.batchers[model.name] = batcher
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await asyncio.gather(*(b.stop() for b in state.batchers.values()))

    routes = [
        Route("/v2", _server_metadata),
        Route("/v2/health/live", _live),
        Route("/v2/health/ready", _ready),
        Route("/v2/models/stats", _stats),
        Route("/metrics", _metrics),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, _model_metadata),
            Route(prefix + "/ready", _model_ready),
            Route(prefix + "/config", _model_config),
            Route(prefix + "/stats", _stats),
            Route(prefix + "/infer", _infer, methods=["POST"]),
        ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ServeError: _serve_error, HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.edgetrt = state
    return app


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _state(request: Request) -> ServerState:
    return request.app.state.edgetrt


async def _serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    return _json({"error": str(exc)}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return Response(orjson.dumps({"error": exc.detail}), exc.status_code, exc.headers, "application/json")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)


async def _live(request: Request) -> Response:
    return Response(status_code=200)


async def _ready(request: Request) -> Response:
    if not _state(request).ready:
        raise ServeError(503, "server is not ready")
    return Response(status_code=200)


async def _server_metadata(request: Request) -> Response:
    return _json({"name": "edgetrt", "version": edge.__version__, "extensions": EXTENSIONS})


async def _model_metadata(request: Request) -> Response:
    return _json(_state(request).model(request).metadata())


async def _model_ready(request: Request) -> Response:
    state = _state(request)
    model = state.model(request)
    if not state.ready:
        raise ServeError(503, f"model '{model.name}' is not ready")
    return Response(status_code=200)


async def _model_config(request: Request) -> Response:
    state = _state(request)
    batching = state.config.batching
    config = state.model(request).config(batching.max_batch, round(batching.max_queue_delay_s * 1e6), batching.instances)
    return _json(config)


async def _stats(request: Request) -> Response:
    state = _state(request)
    names = [state.model(request).name] if "name" in request.path_params else sorted(state.models)
    return _json({"model_stats": [state.stats[name].to_json() for name in names]})


async def _metrics(request: Request) -> Response:
    state = _state(request)
    body = render_text(state.collector.collect()) + generate_latest(state.process_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _infer(request: Request) -> Response:
    start = time.perf_counter_ns()
    state = _state(request)
    model = state.model(request)
    stats = state.stats[model.name]
    try:
        body = await _read_body(request, state.config.max_body_bytes)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        json_length = _json_length(request.headers.get("inference-header-content-length"))
        parsed = await _offload(len(body), _decode, body, encoding, json_length, state.config.max_body_bytes)
        feeds = model.validate(parsed)
        outputs = await state.batchers[model.name].submit(feeds)
        size = sum(a.nbytes for a in outputs.values())
        content, header_length = await _offload(size, encode_infer_response, model.name, model.version, parsed, outputs, model.output_names)
    except ServeError as exc:
        stats.record_request(time.perf_counter_ns() - start, _FAILURE_REASON.get(exc.status, "OTHER"))
        raise
    except Exception:
        stats.record_request(time.perf_counter_ns() - start, "BACKEND")
        raise
    stats.record_request(time.perf_counter_ns() - start)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )


async def _offload(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn`` inline for small payloads, on a worker thread for big ones."""
    if size > _OFFLOAD_BYTES:
        return await run_in_threadpool(fn, *args)
    return fn(*args)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before buffering it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ServeError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_length(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        raise ServeError(400, f"Inference-Header-Content-Length '{header}' is not an integer") from None


def _decode(body: bytes, encoding: str, json_length: int | None, limit: int) -> InferRequest:
    """Undo gzip/deflate Content-Encoding (still bounded by ``limit``), then decode."""
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=47)  # 32 + 15: accept zlib or gzip framing
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ServeError(400, f"request body is not valid {encoding} data ({exc})") from None
        if len(body) > limit:
            raise ServeError(413, f"decompressed request body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            raise ServeError(400, f"{encoding} request body is truncated")
    elif encoding != "identity":
        raise ServeError(415, f"Content-Encoding '{encoding}' is not supported; use gzip, deflate or none")
    return decode_infer_request(body, json_length)
