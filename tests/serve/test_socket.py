"""`rkd serve` started as a user starts it (a subprocess on a free port), driven over a real socket
by a plain HTTP client: good and bad requests, the server still answering afterwards, /metrics
counting them, the API key from the environment, and Ctrl-C stopping it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def call(
    url: str, body: object = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    """One request with urllib; (status, decoded JSON or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def test_good_and_bad_requests_over_a_socket(live_server: str, read_metric: Callable[..., float]) -> None:
    url = live_server
    status, body = call(f"{url}/search", {"queries": ["why does iron rust"], "k": 3, "index": "small"})
    assert status == 200 and body["index"] == "small" and len(body["results"][0]["hits"]) == 3
    first = body["results"][0]["hits"]
    bad = [
        ({"queries": [], "k": 3}, 422, "queries"),
        ({"queries": [""]}, 422, "queries"),
        ({"queries": ["iron"], "k": 0}, 422, "k"),
        ({"queries": ["iron"], "k": "ten"}, 422, "k"),
        ({"queries": ["iron"], "index": "teacher"}, 422, "index"),
    ]
    for request, code, field in bad:
        status, body = call(f"{url}/search", request)
        assert (status, body["field"]) == (code, field), body
    status, body = call(f"{url}/search", raw=b"x" * (2 << 20))  # over the default 1 MiB limit
    assert status == 413 and body["field"] == "body"
    # still serving, with the same answer
    status, body = call(f"{url}/search", {"queries": ["why does iron rust"], "k": 3, "index": "small"})
    assert status == 200 and body["results"][0]["hits"] == first
    status, text = call(f"{url}/metrics")
    assert status == 200
    assert read_metric(text, "rkd_requests_total", method="POST", route="/search", status="200") >= 2
    assert read_metric(text, "rkd_request_errors_total", route="/search", status="422") >= 5
    assert read_metric(text, "rkd_request_errors_total", route="/search", status="413") >= 1
    assert read_metric(text, "rkd_request_errors_total", route="/search", status="500") == 0


def test_api_key_from_the_environment_and_a_clean_stop(
    served_dirs: dict[str, Path], start_server: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    proc, url = start_server(
        ["--index", str(served_dirs["small"]), "--no-batching"], env={"RKD_API_KEY": "k3y"}
    )
    assert call(f"{url}/health")[0] == 200
    status, body = call(f"{url}/search", {"queries": ["iron"]})
    assert status == 401 and body["field"] == "api_key"
    status, body = call(f"{url}/search", {"queries": ["iron"], "k": 2}, headers={"X-API-Key": "k3y"})
    assert status == 200 and len(body["results"][0]["hits"]) == 2
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=30) == 0
    assert proc.stdout is not None and "Traceback" not in proc.stdout.read()


def test_accepted_connections_have_nagle_off() -> None:
    """The listening socket says TCP, so asyncio (uvicorn's loop) sets TCP_NODELAY on every accepted
    connection; with proto 0 it did not, and keep-alive answers waited 40 ms for a delayed ACK."""
    import asyncio
    import socket

    from retrieval_kd.cli.serve import listen

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listen("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return value

    assert asyncio.run(accepted_nodelay()) == 1
