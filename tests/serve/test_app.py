"""Every route and every refusal of the HTTP API through FastAPI's TestClient, over two real
tiny indexes: answers equal the Python API's, bad requests get a 4xx naming the field and the
server keeps serving, /metrics counts what happened."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from retrieval_kd import Retriever
from retrieval_kd.data import load_dataset
from retrieval_kd.serve.app import ServeSettings, create_app
from retrieval_kd.serve.systems import ServedIndex, open_served

QUERIES = ["why does iron rust", "how do vaccines train the immune system"]


@pytest.fixture(scope="module")
def served(served_dirs: dict[str, Path]) -> list[ServedIndex]:
    return open_served([f"big={served_dirs['big']}", f"small={served_dirs['small']}"])


@pytest.fixture
def client(served: list[ServedIndex]) -> Iterator[TestClient]:
    with TestClient(create_app(served, ServeSettings(max_queries=4, max_body_bytes=2000))) as c:
        yield c


def test_search_equals_the_python_api(
    client: TestClient, served_dirs: dict[str, Path], tiny_beir: Path
) -> None:
    student = Path(str(served_dirs["small"]) + "-student")
    expected = Retriever(student, served_dirs["small"]).search(QUERIES, k=5)
    r = client.post("/search", json={"queries": QUERIES, "k": 5, "index": "small", "include_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["index"] == "small" and body["k"] == 5
    docs = load_dataset(f"{tiny_beir}:test").docs
    for i, result in enumerate(body["results"]):
        assert result["query"] == QUERIES[i]
        assert [h["id"] for h in result["hits"]] == list(expected[f"q{i}"])
        assert [h["score"] for h in result["hits"]] == pytest.approx(
            list(expected[f"q{i}"].values()), abs=1e-6
        )
        for hit in result["hits"]:
            assert (hit["title"], hit["text"]) == (docs[hit["id"]].title, docs[hit["id"]].text)
    # the default index is the first served, and without include_documents hits are ids and scores
    plain = client.post("/search", json={"queries": QUERIES[:1], "k": 3}).json()
    assert plain["index"] == "big" and set(plain["results"][0]["hits"][0]) == {"id", "score"}


def test_k_up_to_the_corpus_size(client: TestClient) -> None:
    r = client.post("/search", json={"queries": ["iron"], "k": 32})
    hits = r.json()["results"][0]["hits"]
    assert len(hits) == 32 and len({h["id"] for h in hits}) == 32
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"queries": [], "k": 3}, 422, "queries", "at least 1 item"),
        ({"queries": ["iron", "  "]}, 422, "queries", "query 1 is empty"),
        ({"queries": ["iron"], "k": 0}, 422, "k", "greater than or equal to 1"),
        ({"queries": ["iron"], "k": -3}, 422, "k", "greater than or equal to 1"),
        ({"queries": ["iron"], "k": "5"}, 422, "k", "valid integer"),
        ({"queries": ["iron"], "k": 2.5}, 422, "k", "valid integer"),
        ({"queries": "iron"}, 422, "queries", "valid list"),
        ({"queries": [3]}, 422, "queries.0", "valid string"),
        ({"k": 3}, 422, "queries", "Field required"),
        ({"queries": ["iron"], "k": 33}, 422, "k", "k is 33; index 'big' holds 32 documents"),
        (
            {"queries": ["iron"], "index": "nope"},
            422,
            "index",
            "unknown index 'nope'; choose from ['big', 'small']",
        ),
        ({"queries": ["iron"], "top_k": 3}, 422, "top_k", "Extra inputs are not permitted"),
        ({"queries": ["iron"], "include_documents": "yes"}, 422, "include_documents", "valid boolean"),
        ({"queries": ["a", "b", "c", "d", "e"]}, 422, "queries", "5 queries; at most 4 per request"),
        ({"queries": ["x" * 3000]}, 413, "body", "over the limit of 2000 bytes"),
    ],
)
def test_bad_requests_name_the_field_and_the_server_keeps_serving(
    client: TestClient, body: dict[str, object], status: int, field: str, message: str
) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and message in r.json()["error"], r.json()
    assert client.post("/search", json={"queries": ["iron"], "k": 2}).status_code == 200


def test_bodies_that_are_not_json_or_too_long_without_a_length(client: TestClient) -> None:
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "JSON" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"queries": ["'
        for _ in range(30):
            yield b"y" * 100
        yield b'"]}'

    r = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {
        "error": "request body over the limit of 2000 bytes",
        "field": "body",
    }
    assert client.get("/nowhere").status_code == 404
    assert client.get("/search").status_code == 405


def test_metrics_count_requests_errors_latency_and_batches(
    served: list[ServedIndex], read_metric: Callable[..., float]
) -> None:
    with TestClient(create_app(served)) as client:
        for _ in range(3):
            assert client.post("/search", json={"queries": QUERIES, "k": 2}).status_code == 200
        assert client.post("/search", json={"queries": ["iron"], "k": 0}).status_code == 422
        assert client.post("/search", json={"queries": ["iron"], "index": "x"}).status_code == 422
        assert client.get("/health").status_code == 200
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert read_metric(text, "rkd_requests_total", method="POST", route="/search", status="200") == 3
    assert read_metric(text, "rkd_requests_total", method="POST", route="/search", status="422") == 2
    assert read_metric(text, "rkd_requests_total", method="GET", route="/health", status="200") == 1
    assert read_metric(text, "rkd_request_errors_total", route="/search", status="422") == 2
    assert read_metric(text, "rkd_request_errors_total", route="/search", status="200") == 0
    assert read_metric(text, "rkd_request_latency_seconds_count", route="/search") == 5
    assert read_metric(text, "rkd_queries_total", index="big") == 6
    # sequential requests never share a batch: 3 batches of 2 queries, one request each
    assert read_metric(text, "rkd_batch_queries_count", index="big") == 3
    assert read_metric(text, "rkd_batch_queries_sum", index="big") == 6
    assert read_metric(text, "rkd_batch_queries_bucket", index="big", le="1.0") == 0
    assert read_metric(text, "rkd_batch_queries_bucket", index="big", le="2.0") == 3
    assert read_metric(text, "rkd_batch_requests_sum", index="big") == 3


def test_health_is_ready_only_once_loaded(served: list[ServedIndex]) -> None:
    app = create_app(served)
    before = TestClient(app)  # not entered: the app has not started (no warm-up yet)
    assert before.get("/health").status_code == 503 and before.get("/health").json() == {"status": "loading"}
    r = before.post("/search", json={"queries": ["iron"]})
    assert r.status_code == 503 and r.json()["error"] == "the server is still loading"
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ready", "indexes": ["big", "small"]}


def test_what_is_loaded_is_frozen_out_of_the_collector(served: list[ServedIndex]) -> None:
    """Once started, the loaded models and indexes are out of the collector's view (a full
    collection over them cost each request in flight 285 ms); stopping gives them back."""
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(served)) as client:
        frozen = gc.get_freeze_count()
        tracked = set(map(id, gc.get_objects()))
        assert id(served[0].retriever.index) not in tracked  # frozen objects are not listed
        assert frozen > 10_000  # the torch modules, tokenizer, faiss wrapper and documents
        assert client.post("/search", json={"queries": ["iron"]}).status_code == 200
        # a request freezes nothing more; it may free a few frozen objects that the warm-up left
        # (14 when this test runs alone, none after the suite's earlier tests)
        assert frozen - 100 <= gc.get_freeze_count() <= frozen
    assert gc.get_freeze_count() == 0


def test_api_key_guards_every_route_but_health_and_the_page_files(served: list[ServedIndex]) -> None:
    with TestClient(create_app(served, ServeSettings(api_key="s3cret"))) as client:
        assert client.get("/health").status_code == 200
        for method, path in [("POST", "/search"), ("GET", "/indexes"), ("GET", "/metrics"), ("GET", "/docs")]:
            for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer s3cre"}):
                r = client.request(method, path, json={"queries": ["iron"]}, headers=headers)
                assert r.status_code == 401 and r.json()["field"] == "api_key", (path, headers)
        ok = {"queries": ["iron"], "k": 1}
        assert client.post("/search", json=ok, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post("/search", json=ok, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/", headers={}).status_code == 200  # the page asks for the key itself


def test_indexes_docs_and_page(client: TestClient) -> None:
    listed = client.get("/indexes").json()
    assert [(i["name"], i["kind"], i["size"], i["documents"]) for i in listed] == [
        ("big", "faiss", 32, True),
        ("small", "faiss", 32, True),
    ]
    assert listed[0]["student_fingerprint"] != listed[1]["student_fingerprint"]
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {"/search", "/health", "/metrics", "/indexes"}
    assert "swagger-ui" in client.get("/docs").text
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(links) == ["/static/app.js", "/static/style.css"]  # no CDN: rkd serves all of it
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
