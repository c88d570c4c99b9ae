"""The embedder: the bundled local model, or any OpenAI-compatible embeddings endpoint.

The API key is never part of the configuration: ``openai_api_key_env`` names the environment
variable that holds it, read when :meth:`EmbedderResource.get_embedder` runs.
"""

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field

from cartrita_assets.embeddings.cache import CachedEmbedder
from cartrita_assets.embeddings.embedders import (
    KINDS,
    Embedder,
    EmbedderError,
    LocalEmbedder,
    OpenAIEmbedder,
)


class EmbedderResource(dg.ConfigurableResource):
    """Which embedder turns text into vectors, and how it is reached."""

    kind: str = Field(
        default="local",
        description=(
            "local (the bundled all-MiniLM-L6-v2, 384 dims, no network) or openai (any "
            "OpenAI-compatible endpoint)"
        ),
    )
    batch_size: int = Field(default=64, description="Texts per model run or per request.")
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="kind openai: the API root; requests go to {openai_base_url}/embeddings.",
    )
    openai_model: str = Field(
        default="text-embedding-3-small",
        description="kind openai: the endpoint's model, also the model name stored with vectors.",
    )
    openai_dimensions: int = Field(
        default=1536,
        description="kind openai: the vector length requested and checked on every answer.",
    )
    openai_send_dimensions: bool = Field(
        default=True,
        description=(
            "kind openai: send `dimensions` in the request (turn off for models or servers that "
            "reject it, e.g. text-embedding-ada-002)."
        ),
    )
    openai_api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description=(
            "kind openai: the NAME of the environment variable holding the API key (the key "
            "itself is never configured); empty for an endpoint that needs no key."
        ),
    )
    max_retries: int = Field(
        default=6,
        description="kind openai: retries of 429, 5xx, timeouts and network errors (backoff).",
    )

    cache_path: str | None = Field(
        default=None,
        description=(
            "A SQLite file of vectors by (model, sha256 of the text): a re-run embeds only texts "
            "it has never seen (a forward run replaces v2's database). Empty: no cache."
        ),
    )

    def get_embedder(self, log: Callable[[str], None] | None = None) -> Embedder:
        """The configured embedder, behind the vector cache when ``cache_path`` is set."""
        inner = self._embedder(log)
        if self.cache_path:
            return CachedEmbedder(inner, Path(self.cache_path))
        return inner

    def _embedder(self, log: Callable[[str], None] | None = None) -> Embedder:
        """The configured embedder (the local model is loaded on its first ``embed``).

        Args:
            log: receives one line per retry of the openai endpoint.

        Raises:
            EmbedderError: an unknown kind, or kind openai without its API key variable set.
        """
        kind = self.kind.strip().lower()
        if kind == "local":
            return LocalEmbedder(batch_size=self.batch_size)
        if kind == "openai":
            api_key: str | None = None
            if self.openai_api_key_env:
                api_key = os.environ.get(self.openai_api_key_env, "").strip()
                if not api_key:
                    raise EmbedderError(
                        f"set {self.openai_api_key_env} (named by openai_api_key_env) to the API "
                        f"key of {self.openai_base_url}, or use the embedder kind 'local'. Set "
                        "openai_api_key_env to '' for an endpoint that needs no key."
                    )
            return OpenAIEmbedder(
                base_url=self.openai_base_url,
                model=self.openai_model,
                dimensions=self.openai_dimensions,
                api_key=api_key,
                batch_size=self.batch_size,
                max_retries=self.max_retries,
                send_dimensions=self.openai_send_dimensions,
                log=log,
                api_key_env=self.openai_api_key_env or "OPENAI_API_KEY",
            )
        raise EmbedderError(f"Unknown embedder kind {self.kind!r}; use one of: {', '.join(KINDS)}.")
