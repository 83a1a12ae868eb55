"""The HTTP API over served indexes: a thin FastAPI layer over :class:`~retrieval_kd.api.Retriever`.

Routes: ``POST /search``, ``GET /indexes``, ``GET /health``, ``GET /metrics`` (Prometheus),
``GET /`` (the search page) and FastAPI's ``/docs``. Route handlers validate and shape; every
search goes through a :class:`~retrieval_kd.serve.batching.MicroBatcher` to the index's
``Retriever.search``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval_kd.serve.batching import MicroBatcher, Overloaded
from retrieval_kd.serve.metrics import Metrics
from retrieval_kd.serve.systems import ServedIndex

PUBLIC = ("/health", "/", "/static/")  # the page's files hold no data; /search and /indexes do
DISCARD_BYTES = 64 << 20
"""How much of a body over the limit is read and dropped before the 413 goes out. A server that
answers and closes while the client is still sending makes the client's next write fail (broken
pipe, connection reset) before it reads the answer, so a client would see an error instead of
the 413 (nginx's "lingering close" does the same); past this much the connection is just closed."""
KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts.

    Attributes:
        batching: micro-batch concurrent requests (False: one encode per request).
        max_batch: queries per encoder batch at most.
        max_wait_ms: how long the first request of a batch waits for others.
        max_queries: queries per request at most.
        max_body_bytes: request body size at most.
        api_key: when set, every route but ``/health`` and the page's static files needs it
            (header ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``).
    """

    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_queries: int = 256
    max_body_bytes: int = 1 << 20
    api_key: str | None = None


class SearchRequest(BaseModel):
    """A batch of queries against one index."""

    model_config = ConfigDict(extra="forbid")

    queries: Annotated[list[StrictStr], Field(min_length=1, description="query texts, one or more")]
    k: StrictInt = Field(10, ge=1, description="hits per query, at most the index's document count")
    index: StrictStr | None = Field(None, description="index name (default: the first served)")
    include_documents: StrictBool = Field(False, description="add each hit's title and text")

    @field_validator("queries")
    @classmethod
    def _no_empty_query(cls, queries: list[str]) -> list[str]:
        for i, text in enumerate(queries):
            if not text.strip():
                raise ValueError(f"query {i} is empty")
        return queries


class Hit(BaseModel):
    id: str
    score: float
    title: str | None = None
    text: str | None = None


class QueryResult(BaseModel):
    query: str
    hits: list[Hit]


class SearchResponse(BaseModel):
    index: str
    k: int
    results: list[QueryResult]


class ApiError(Exception):
    """A request the server refuses: status, the field at fault, and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def create_app(served: Sequence[ServedIndex], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``served`` (already opened: see :func:`~retrieval_kd.serve.systems.open_served`).

    ``/health`` says "ready" once the app has started and run one warm-up search per index
    (the first encode pays for lazy initialisation).
    """
    settings = settings or ServeSettings()
    by_name = {s.name: s for s in served}
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rkd-search")
    batchers = {
        s.name: MicroBatcher(
            s.retriever.search,
            executor,
            enabled=settings.batching,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000,
            on_batch=functools.partial(metrics.observe_batch, s.name),
        )
        for s in served
    }
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        for s in served:
            await loop.run_in_executor(executor, s.retriever.search, ["warm up"], 1)
        # What is loaded now (models, indexes, the corpus texts: about 550k objects for SciFact's
        # dense index) lives as long as the server, yet every full collection walks it again: 285
        # ms each, which every request in flight waited out (the p99 of BENCHMARKS.md's load
        # test). gc.freeze moves it out of the collector's view; gc still runs for what requests
        # allocate.
        gc.collect()
        gc.freeze()
        state["ready"] = True
        yield
        state["ready"] = False
        gc.unfreeze()
        for b in batchers.values():
            await b.close()
        executor.shutdown(wait=False)

    app = FastAPI(
        title="rkd",
        summary="Search the indexes rkd built",
        lifespan=lifespan,
        version=_version(),
    )
    routes: set[str] = set()  # filled below, read per request for the metrics' route label
    app.add_middleware(_Guard, settings=settings, metrics=metrics, routes=routes)  # type: ignore[arg-type]

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.field, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        field = "body" if e.status_code == 413 else "path"
        return _error(e.status_code, field, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        for err in e.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            field = "body" if err.get("type") == "json_invalid" else ".".join(loc) or "body"
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append({"field": field, "error": message})
        first = problems[0] if problems else {"field": "body", "error": "invalid request"}
        return JSONResponse(
            {"error": f"{first['field']}: {first['error']}", "field": first["field"], "problems": problems},
            status_code=422,
        )

    @app.get("/health", summary="Ready once every index and its encoder are loaded")
    async def health() -> JSONResponse:
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "indexes": list(by_name)})

    @app.get("/indexes", summary="The served indexes")
    async def indexes() -> list[dict[str, Any]]:
        return [s.describe() for s in served]

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
    async def search(body: SearchRequest) -> SearchResponse:
        """Top-``k`` documents for each query, best first."""
        name = body.index if body.index is not None else served[0].name
        if name not in by_name:
            raise ApiError(422, "index", f"unknown index {name!r}; choose from {list(by_name)}")
        system = by_name[name]
        if body.k > system.size:
            raise ApiError(422, "k", f"k is {body.k}; index {name!r} holds {system.size} documents")
        if len(body.queries) > settings.max_queries:
            raise ApiError(
                422, "queries", f"{len(body.queries)} queries; at most {settings.max_queries} per request"
            )
        if body.include_documents and system.docs is None:
            raise ApiError(422, "include_documents", f"index {name!r} is served without document texts")
        if not state["ready"]:
            raise ApiError(503, "index", "the server is still loading")
        try:
            rows = await batchers[name].search(body.queries, body.k)
        except Overloaded as e:
            raise ApiError(503, "queries", f"server busy: {e}") from None
        docs = system.docs if body.include_documents else None
        return SearchResponse(
            index=name,
            k=body.k,
            results=[
                QueryResult(query=q, hits=_hits(row, docs)) for q, row in zip(body.queries, rows, strict=True)
            ],
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    static = files("retrieval_kd.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    routes.update(getattr(r, "path", "") for r in app.routes)
    return app


def _hits(row: dict[str, float], docs: Any) -> list[Hit]:
    if docs is None:
        return [Hit(id=d, score=s) for d, s in row.items()]
    out = []
    for d, s in row.items():
        doc = docs.get(d)
        out.append(Hit(id=d, score=s, title=doc.title if doc else "", text=doc.text if doc else ""))
    return out


def _version() -> str:
    from retrieval_kd import __version__

    return str(__version__)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(HTTPException):
    """Raised from ``receive`` (inside FastAPI's body reading, which re-raises HTTP exceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


async def _discard(receive: Receive) -> None:
    """Reads the rest of a request body (up to :data:`DISCARD_BYTES`) and drops it."""
    seen = 0
    while seen <= DISCARD_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))


class _Guard:
    """ASGI middleware: the API key, the body size limit, and the request metrics."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        settings: ServeSettings,
        metrics: Metrics,
        routes: set[str],
    ) -> None:
        self.app, self.settings, self.metrics, self.routes = app, settings, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                if refusal.status_code == 413:
                    await _discard(receive)
                await refusal(scope, receive, sending)
                return
            await self.app(scope, self._counting(receive), sending)
        except _TooLarge:
            await _discard(receive)
            await self._too_large()(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.observe_request(self._label(scope), scope["method"], status[0], seconds)

    def _label(self, scope: Scope) -> str:
        path = str(scope["path"])
        if path.startswith("/static/"):
            return "/static"
        return path if path in self.routes else "other"

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        key = self.settings.api_key
        path = scope["path"]
        if key and not (path in PUBLIC or path.startswith("/static/")):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            given = (
                headers.get(KEY_HEADER) or headers.get("authorization", "").removeprefix("Bearer ").strip()
            )
            if not hmac.compare_digest(given.encode(), key.encode()):
                return _error(401, "api_key", "missing or wrong API key (send X-API-Key: KEY)")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> JSONResponse:
        return _error(413, "body", f"request body over the limit of {self.settings.max_body_bytes} bytes")

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that stops a body without a Content-Length at the size limit."""
        seen = [0]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.settings.max_body_bytes:
                    raise _TooLarge(self.settings.max_body_bytes)
            return message

        return counted
