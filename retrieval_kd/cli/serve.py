"""``rkd serve``: indexes behind an HTTP API and a search page."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from retrieval_kd.cli._common import cli_errors, err
from retrieval_kd.errors import RkdError

if TYPE_CHECKING:
    from retrieval_kd.serve.app import ServeSettings
    from retrieval_kd.serve.systems import ServedIndex

API_KEY_ENV = "RKD_API_KEY"


@cli_errors
def serve(
    index: Annotated[
        list[str],
        typer.Option(
            "--index",
            "-i",
            help="index folder, or NAME=DIR (repeatable; two show side by side on the page)",
        ),
    ],
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one)")] = 8000,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="where the document texts come from (default: the dataset each index records)",
        ),
    ] = None,
    documents: Annotated[
        bool, typer.Option("--documents/--no-documents", help="serve document titles and texts")
    ] = True,
    batching: Annotated[
        bool,
        typer.Option("--batching/--no-batching", help="micro-batch concurrent queries through the encoder"),
    ] = True,
    max_batch: Annotated[int, typer.Option(min=1, help="queries per encoder batch at most")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, help="how long a batch waits for more queries (ms)")
    ] = 2.0,
    max_queries: Annotated[int, typer.Option(min=1, help="queries per request at most")] = 256,
    max_body: Annotated[int, typer.Option(min=1, help="request body size limit (bytes)")] = 1 << 20,
    api_key: Annotated[
        str | None,
        typer.Option(
            help=f"require this key (X-API-Key header) on every route but /health; default ${API_KEY_ENV}"
        ),
    ] = None,
) -> None:
    """Serve indexes over HTTP: POST /search, GET /health, /metrics, /docs, and a search page at /."""
    # Before torch or faiss is imported: each OpenMP runtime reads it once, at load. By default
    # an OpenMP worker spins on its core after every parallel region; torch and faiss-cpu bring a
    # runtime each, and between micro-batches the spinning workers held the cores the event loop
    # and the other runtime needed. Sleeping at once instead: at 8 clients p99 40 ms against 67-69,
    # QPS +30%, one client unchanged (BENCHMARKS.md, "rkd serve under load"). A value the user
    # set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from retrieval_kd.serve.systems import open_served

    err.print(f"rkd serve: opening {len(index)} index(es) and their query encoders…", highlight=False)
    served = open_served(index, dataset, documents)
    settings = _settings(batching, max_batch, max_wait_ms, max_queries, max_body, api_key)
    run_server(served, settings, host, port)


def _settings(
    batching: bool, max_batch: int, max_wait_ms: float, max_queries: int, max_body: int, api_key: str | None
) -> ServeSettings:
    from retrieval_kd.serve.app import ServeSettings

    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    if key is not None and not key.strip():
        raise RkdError("--api-key is empty")
    return ServeSettings(batching, max_batch, max_wait_ms, max_queries, max_body, key)


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one), for uvicorn to serve on.

    proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only
    when the listening socket says TCP (``asyncio.base_events._set_nodelay``). With proto 0 every
    answer on a keep-alive connection waited up to 40 ms for the client's delayed ACK (a /health
    call took 44 ms instead of 0.7 ms; BENCHMARKS.md, "rkd serve under load").
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise RkdError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def run_server(served: list[ServedIndex], settings: ServeSettings, host: str, port: int) -> None:
    """Runs uvicorn until interrupted; prints the address it listens on once ready."""
    import uvicorn

    from retrieval_kd.serve.app import create_app

    sock = listen(host, port)
    bound = sock.getsockname()[1]
    app = create_app(served, settings)
    names = ", ".join(s.name for s in served)
    where = f"[{host}]" if ":" in host else host
    batching = (
        f"batching ≤{settings.max_batch} queries / {settings.max_wait_ms:g} ms"
        if settings.batching
        else "no batching"
    )
    err.print(f"rkd serve: {names} at http://{where}:{bound}/ ({batching})", highlight=False, soft_wrap=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on
        pass
    err.print("rkd serve: stopped", highlight=False)
