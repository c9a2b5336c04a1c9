"""A chat client for any OpenAI-compatible endpoint: retries, a budget, a response cache.

Transient failures (timeouts, connection errors, 429, 5xx) are retried with
exponential back-off and jitter (tenacity). Every answer is cached in the
tuning database under a hash of the request, so a replayed or resumed run
pays for no call twice. The API key stays inside the openai client: it is
never logged, reported or stored.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

FORMATS = ("json_schema", "json_object", "plain")


class LLMUnavailable(RuntimeError):
    """The endpoint did not answer usefully after retries."""


class BudgetExhausted(RuntimeError):
    """The run's cap on LLM calls or tokens is reached."""


def is_transient(err: BaseException) -> bool:
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    return isinstance(err, openai.APIStatusError) and err.status_code >= 500


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    per_call: list = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMClient:
    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_calls: int = 200, max_tokens_total: int = 400_000,
                 response_format: str = "json_schema", attempts: int = 4, max_tokens: int = 700,
                 cache=None, seed: int | None = None):
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("no-key" if base_url else None)
        if key is None:
            raise LLMUnavailable("no LLM endpoint configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for "
                                 "another server) or pass --llm-base-url")
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
        self._secret = key
        self.base_url = base_url or "https://api.openai.com/v1"
        self.model = model or os.environ.get("RCOMPILER_LLM_MODEL")
        self.max_calls, self.max_tokens_total = max_calls, max_tokens_total
        self.response_format = response_format
        self.attempts, self.max_tokens = attempts, max_tokens
        self.cache = cache
        self.seed = seed  # servers that honour it (OpenAI, llama.cpp) sample reproducibly
        self.usage = Usage()

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret and self._secret != "no-key" else text

    def resolve_model(self) -> str:
        if self.model is None:
            try:
                models = self._retrying(lambda: self._client.models.list())
                self.model = models.data[0].id
            except Exception as err:  # noqa: BLE001
                raise LLMUnavailable(self.redact(f"cannot list models at {self.base_url}: {err}")) from None
        return self.model

    def complete(self, messages: list[dict], schema: dict | None = None, temperature: float = 0.7) -> str:
        """The assistant's text for `messages` (from the cache when this exact request was made before)."""
        model = self.resolve_model()
        request = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": self.max_tokens,
                   **({"seed": self.seed} if self.seed is not None else {}), **self._format(schema)}
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        if self.cache is not None:
            hit = self.cache.cached_response(key)
            if hit is not None:
                self.usage.cached += 1
                return hit["text"]
        if self.usage.calls >= self.max_calls:
            raise BudgetExhausted(f"{self.max_calls} calls")
        if self.usage.tokens >= self.max_tokens_total:
            raise BudgetExhausted(f"{self.max_tokens_total} tokens")
        self.usage.calls += 1
        try:
            response = self._retrying(lambda: self._client.chat.completions.create(**request))
        except openai.BadRequestError as err:
            if self.response_format != "plain" and "response_format" in str(err).lower() + str(err.body).lower():
                self.response_format = "plain"  # the server takes no schema: ask in words
                return self.complete(messages, schema, temperature)
            raise LLMUnavailable(self.redact(f"request rejected: {err}")) from None
        except Exception as err:  # noqa: BLE001 - transient errors that outlived the retries, or worse
            raise LLMUnavailable(self.redact(f"{type(err).__name__}: {err}")) from None
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        self.usage.per_call.append({"prompt_tokens": p, "completion_tokens": c})
        if self.cache is not None:
            self.cache.cache_response(key, {"text": text}, p, c)
        return text

    def _format(self, schema: dict | None) -> dict:
        if schema is None or self.response_format == "plain":
            return {}
        if self.response_format == "json_object":  # llama.cpp: a JSON grammar from the schema
            return {"response_format": {"type": "json_object", "schema": schema}}
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "schedules", "schema": schema}}}

    def _retrying(self, call):
        def count(state: RetryCallState) -> None:
            self.usage.retries += 1

        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_random_exponential(multiplier=0.5, max=8),
                            retry=retry_if_exception(is_transient), before_sleep=count, reraise=True)
        return retrying(call)
