"""Load test of `rkd serve`: QPS and latency percentiles at fixed client counts, micro-batching on
and off, over loopback only.

For each mode the script starts its own `rkd serve --port 0` on 127.0.0.1 (a subprocess, so the
clients do not share its interpreter), then for each client count runs that many closed-loop
clients (a thread each, one keep-alive connection, one query per request, the next request as
soon as the answer is in) for a fixed duration, and stops by itself. Rows: completed requests per
second, p50/p95/p99 latency, mean queries per encoder batch (from /metrics), 5xx and other
non-200 answers, and the server's resident memory before and after the mode's runs. The ratio
column is QPS against batching off at the same client count.

Queries are the test queries of the dataset the index records (SciFact's 300 for the recipe's
index), cycled. The clients run on the same cores as the server: at 16 clients they take a
share of the CPU the server would otherwise have.

Run::

    python benchmarks/bench_serve_load.py --index runs/scifact-dense/index/student_after
    python benchmarks/bench_serve_load.py --duration 5 --clients 1 4 8 16 --out /tmp/bench/serve.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default="runs/scifact-dense/index/student_after", help="index folder to serve")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each cell is timed")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="the server's batching wait")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="the server's torch threads (`rkd --threads N serve`; default 1)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the table as Markdown here")
    return p.parse_args()


@dataclass
class Cell:
    mode: str
    clients: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    mean_batch: float

    @property
    def qps(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    @property
    def other(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200 and s < 500)


def start_server(
    index: str, batching: bool, max_wait_ms: float, threads: int
) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, "-m", "retrieval_kd", "--threads", str(threads), "serve", "--index", index]
    args += ["--port", "0", "--host", "127.0.0.1", "--no-documents", "--max-wait-ms", str(max_wait_ms)]
    if not batching:
        args.append("--no-batching")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        found = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        if found:
            port = int(found.group(1))
            break
        if time.monotonic() > deadline:
            break
    else:
        raise SystemExit(f"rkd serve did not start (exit {proc.wait()})")
    while time.monotonic() < deadline:
        try:
            if get(port, "/health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("rkd serve never became ready")


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def batch_totals(port: int) -> tuple[float, float]:
    """(queries, batches) so far, summed over indexes, from /metrics."""
    text = get(port, "/metrics")[1]
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        m = re.match(r"rkd_batch_queries_(sum|count)\{.*\} (\S+)", line)
        if m:
            total[m.group(1)] += float(m.group(2))
    return total["sum"], total["count"]


def load(port: int, queries: list[str], k: int, clients: int, warmup: float, seconds: float) -> Cell:
    """``clients`` closed-loop clients; latencies of requests that started inside the timed window."""
    start = time.perf_counter() + warmup
    stop = start + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = i
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            body = json.dumps({"queries": [queries[n % len(queries)]], "k": k})
            n += clients
            try:
                conn.request("POST", "/search", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 599  # a dropped connection counts as a server error
            t1 = time.perf_counter()
            if t0 >= start:
                latencies[i].append(t1 - t0)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=warmup + seconds + 120)  # bounded even if the server hangs
    return Cell("", clients, seconds, [x for per in latencies for x in per], statuses, float("nan"))


def test_queries(index: str) -> list[str]:
    from retrieval_kd.data import load_dataset

    manifest = json.loads((Path(index) / "manifest.json").read_text())
    try:
        return list(load_dataset(manifest["dataset"]).queries.values())
    except Exception as e:  # a benchmark still runs on an index whose dataset is not here
        print(f"no test queries ({e}); using synthetic ones", file=sys.stderr)
        return [f"query number {i} about cells, proteins and disease" for i in range(100)]


def main() -> None:
    args = parse_args()
    console = Console()
    queries = test_queries(args.index)
    cells: list[Cell] = []
    memory: dict[str, tuple[float, float]] = {}
    for mode, batching in (("off", False), ("on", True)):
        proc, port = start_server(args.index, batching, args.max_wait_ms, args.threads)
        try:
            before = rss_mib(proc.pid)
            for clients in args.clients:
                q0, b0 = batch_totals(port)
                cell = load(port, queries, args.k, clients, args.warmup, args.duration)
                q1, b1 = batch_totals(port)
                cell.mode, cell.mean_batch = mode, (q1 - q0) / max(b1 - b0, 1)
                cells.append(cell)
                line = f"batching {mode:3} clients {clients:2}: {cell.qps:6.1f} QPS, "
                line += f"p50 {cell.pct(50):6.1f} ms, p99 {cell.pct(99):6.1f} ms, 5xx {cell.server_errors}"
                console.print(line, highlight=False)
            memory[mode] = (before, rss_mib(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    off = {c.clients: c.qps for c in cells if c.mode == "off"}
    header = [
        "batching",
        "clients",
        "QPS",
        "× off",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "queries/batch",
        "5xx",
        "other non-200",
    ]
    rows = [
        [c.mode, str(c.clients), f"{c.qps:.1f}", f"{c.qps / off[c.clients]:.2f}", f"{c.pct(50):.1f}",
         f"{c.pct(95):.1f}", f"{c.pct(99):.1f}", f"{c.mean_batch:.2f}", str(c.server_errors), str(c.other)]
        for c in cells
    ]  # fmt: skip
    table = Table(*header, title=f"rkd serve load test: {args.index}, {args.duration:g} s per cell")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    mem = "; ".join(f"batching {m}: RSS {a:.0f} → {b:.0f} MiB" for m, (a, b) in memory.items())
    console.print(mem)
    if args.out is not None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", f"Server memory before/after the mode's runs: {mem}.", ""]
        lines += [
            f"{os.cpu_count()} CPUs; {args.duration:g} s per cell after {args.warmup:g} s warm-up; k={args.k}"
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
