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
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from edge.version import __version__
from edge.serve.batcher import DynamicBatcher
from edge.serve.connections import ConnectionLimits
from edge.serve.metrics import ModelStats, TritonCollector, render_text
from edge.serve.model import ServedModel
from edge.serve.protocol import InferRequest, ServeError, decode_infer_request, encode_infer_response
from edge.serve.repository import Repository
from edge.serve.requestlog import RequestLog

__all__ = ["ServeConfig", "ServerState", "create_app", "create_metrics_app", "EXTENSIONS"]

EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
_OFFLOAD_BYTES = 256 << 10  # decode/encode bigger payloads on a worker thread, not the event loop
_FAILURE_REASON = {503: "REJECTED", 500: "BACKEND"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServeConfig:
    """Server settings (the CLI's flags hold the user-facing defaults)."""

    host: str
    port: int
    max_body_bytes: int
    connections: ConnectionLimits
    drain_timeout_s: float = 30.0
    metrics_port: int | None = None
    log_verbose: int = 0


class ServerState:
    """Loaded models (name -> version -> model), their batchers, the repository, and metrics sources."""

    def __init__(self, config: ServeConfig, repository: Repository | None, extra_metrics: Sequence[Any] = ()) -> None:
        self.config = config
        self.repository = repository
        self.models: dict[str, dict[str, ServedModel]] = {}
        self.load_errors: dict[str, str] = {}
        self.batchers: dict[tuple[str, str], DynamicBatcher] = {}
        self.ready = False
        self.changing = asyncio.Lock()  # one load/unload at a time
        self.collector = TritonCollector(lambda: [m.stats for versions in self.models.values() for m in versions.values()])
        self.process_registry = CollectorRegistry()
        ProcessCollector(registry=self.process_registry)
        self.extra_metrics = list(extra_metrics)
        self.metrics_port: int | None = None  # the separate metrics port once bound

    def model(self, request: Request) -> ServedModel:
        """The model version a request's path names (no version: the highest); 404 when unknown."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        versions = self.models.get(name)
        if versions is None:
            raise ServeError(404, f"unknown model '{name}'; serving {sorted(self.models)}")
        if version is None:
            return versions[max(versions, key=int)]
        if version not in versions:
            raise ServeError(404, f"model '{name}' has no version '{version}'; versions: {sorted(versions, key=int)}")
        return versions[version]

    def stats_of(self, name: str, version: str = "1") -> ModelStats:
        """The statistics of one loaded model version."""
        return self.models[name][version].stats

    async def put(self, name: str, models: Sequence[ServedModel]) -> None:
        """Serve ``models`` (versions of ``name``), replacing what served that name; old ones drain."""
        started = []
        for model in models:
            batcher = DynamicBatcher(model, model.batching, model.stats)
            await batcher.start()
            started.append((model, batcher))
        old = self._detach(name)  # no await between detach and attach: the swap is atomic
        self.models[name] = {m.version: m for m in models}
        for model, batcher in started:
            self.batchers[(name, model.version)] = batcher
        self.load_errors.pop(name, None)
        await asyncio.gather(*(b.stop() for b in old))

    async def remove(self, name: str) -> None:
        """Stop serving ``name``; its queued and running requests still finish."""
        await asyncio.gather(*(b.stop() for b in self._detach(name)))

    def _detach(self, name: str) -> list[DynamicBatcher]:
        versions = self.models.pop(name, {})
        return [self.batchers.pop((name, v)) for v in versions]


def create_app(
    models: Sequence[ServedModel],
    config: ServeConfig,
    repository: Repository | None = None,
    extra_metrics: Sequence[Any] = (),
) -> Starlette:
    """Build the ASGI app serving ``models`` and every model of ``repository``.

    Batchers start and drain with the app's lifespan. ``extra_metrics`` are prometheus-client
    collectors (telemetry) rendered after the Triton families.
    """
    state = ServerState(config, repository, extra_metrics)
    names = [m.name for m in models]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ServeError(400, f"two models are both named '{duplicate}'; give each its own name (NAME=PATH)")
    initial = {m.name: [m] for m in models}
    if repository is not None:
        for name in repository.names():
            if name in initial:
                raise ServeError(400, f"model '{name}' is both an engine argument and in the model repository")
            initial[name] = repository.load(name)  # at startup a broken model is an error, not a state

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name, versions in initial.items():
            await state.put(name, versions)
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await asyncio.gather(*(state.remove(name) for name in list(state.models)))

    routes = [
        Route("/v2", _server_metadata),
        Route("/v2/health/live", _live),
        Route("/v2/health/ready", _ready),
        Route("/v2/models/stats", _stats),
        Route("/metrics", _metrics),
    ]
    if repository is not None:
        routes += [
            Route("/v2/repository/index", _repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", _load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", _unload, methods=["POST"]),
        ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, _model_metadata),
            Route(prefix + "/ready", _model_ready),
            Route(prefix + "/config", _model_config),
            Route(prefix + "/stats", _stats),
            Route(prefix + "/infer", _infer, methods=["POST"]),
        ]
    middleware = [Middleware(RequestLog)] if config.log_verbose > 0 else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware, exception_handlers=_HANDLERS)
    app.state.edgetrt = state
    return app


def create_metrics_app(state: ServerState) -> Starlette:
    """The app of the separate metrics port (Triton's 8002): ``/metrics`` only, sharing ``state``."""
    app = Starlette(routes=[Route("/metrics", _metrics)], exception_handlers=_HANDLERS)
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


_HANDLERS: dict[Any, Callable[..., Any]] = {ServeError: _serve_error, HTTPException: _http_error, Exception: _internal_error}


async def _live(request: Request) -> Response:
    return Response(status_code=200)


async def _ready(request: Request) -> Response:
    if not _state(request).ready:
        raise ServeError(503, "server is not ready")
    return Response(status_code=200)


async def _server_metadata(request: Request) -> Response:
    extensions = EXTENSIONS + (["model_repository"] if _state(request).repository is not None else [])
    return _json({"name": "edgetrt", "version": __version__, "extensions": extensions})


async def _model_metadata(request: Request) -> Response:
    state = _state(request)
    model = state.model(request)
    return _json(model.metadata(sorted(state.models[model.name], key=int)))


async def _model_ready(request: Request) -> Response:
    state = _state(request)
    model = state.model(request)
    if not state.ready:
        raise ServeError(503, f"model '{model.name}' is not ready")
    return Response(status_code=200)


async def _model_config(request: Request) -> Response:
    return _json(_state(request).model(request).config_json())


async def _stats(request: Request) -> Response:
    state = _state(request)
    if "name" in request.path_params:
        chosen = [state.model(request)]
    else:
        chosen = [m for name in sorted(state.models) for _, m in sorted(state.models[name].items(), key=lambda kv: int(kv[0]))]
    return _json({"model_stats": [m.stats.to_json() for m in chosen]})


async def _metrics(request: Request) -> Response:
    state = _state(request)
    families = [*state.collector.collect(), *(f for c in state.extra_metrics for f in c.collect())]
    body = render_text(families) + generate_latest(state.process_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _repository_index(request: Request) -> Response:
    state = _state(request)
    assert state.repository is not None
    body = await _read_body(request, state.config.max_body_bytes)
    doc = _json_object(body, "repository index request")
    ready_only = doc.get("ready", False)
    if not isinstance(ready_only, bool):
        raise ServeError(400, "repository index: 'ready' must be true or false")
    entries = []
    for name in await run_in_threadpool(state.repository.names):
        versions = state.models.get(name)
        if versions:
            entries += [{"name": name, "version": v, "state": "READY"} for v in sorted(versions, key=int)]
        elif not ready_only:
            entries.append({"name": name, "state": "UNAVAILABLE", "reason": state.load_errors.get(name, "unloaded")})
    return _json(entries)


async def _load(request: Request) -> Response:
    state = _state(request)
    assert state.repository is not None
    name = request.path_params["name"]
    doc = _json_object(await _read_body(request, state.config.max_body_bytes), f"load '{name}' request")
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ServeError(400, f"load '{name}': 'parameters' must be a JSON object")
    files = [key for key in parameters if key.startswith("file:")]
    if files:
        raise ServeError(400, f"load '{name}': uploading model files ('{files[0]}') is not supported; put them in the repository")
    config = parameters.get("config")
    if config is not None and not isinstance(config, str):
        raise ServeError(400, f"load '{name}': parameter 'config' must be a JSON string")
    async with state.changing:
        try:
            models = await run_in_threadpool(state.repository.load, name, config)
        except ServeError as exc:
            state.load_errors[name] = str(exc)
            raise
        await state.put(name, models)
    return Response(status_code=200)


async def _unload(request: Request) -> Response:
    state = _state(request)
    assert state.repository is not None
    name = request.path_params["name"]
    await _read_body(request, state.config.max_body_bytes)
    if name not in await run_in_threadpool(state.repository.names):  # engine-file models stay
        raise ServeError(400, f"failed to unload '{name}': it is not in the model repository")
    async with state.changing:
        await state.remove(name)
    return Response(status_code=200)


def _json_object(body: bytes, where: str) -> dict[str, Any]:
    """An optional JSON object body (empty means ``{}``)."""
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServeError(400, f"{where}: malformed JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ServeError(400, f"{where}: body must be a JSON object")
    return doc


async def _infer(request: Request) -> Response:
    start = time.perf_counter_ns()
    state = _state(request)
    model = state.model(request)
    batcher = state.batchers[(model.name, model.version)]  # taken now: an unload while reading the body gets 503
    stats = model.stats
    try:
        body = await _read_body(request, state.config.max_body_bytes)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        json_length = _json_length(request.headers.get("inference-header-content-length"))
        parsed = await _offload(len(body), _decode, body, encoding, json_length, state.config.max_body_bytes)
        feeds = model.validate(parsed)
        outputs = await batcher.submit(feeds)
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
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ServeError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone (or cut off by the stall timer) mid-body: a client error, not a crash
        raise ServeError(400, f"client closed the connection after {total} bytes of the request body") from None
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
