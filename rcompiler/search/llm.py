"""The LLM proposer: the model reads the program, the machine and the measured
history, and proposes the next schedules.

Every answer is validated against the vocabulary; invalid parts are dropped
with the reason recorded. An empty or unusable answer falls back to the
heuristic proposer for that expansion; an endpoint that stays down, or a spent
budget, switches the rest of the run to the heuristic, said once.
"""
from __future__ import annotations

import sys

from rcompiler.llm_client import BudgetExhausted, LLMClient, LLMUnavailable

from .context import Proposal, ProposalContext
from .heuristic import HeuristicProposer
from .prompt import answer_schema, build_messages, parse_answer

MAX_NOTES = 50


class LLMProposer:
    name = "llm"

    def __init__(self, db=None, model: str | None = None, base_url: str | None = None, max_calls: int = 200,
                 max_tokens_total: int = 400_000, timeout: float = 60.0, temperature: float = 0.7,
                 response_format: str | None = None, attempts: int = 4, api_key: str | None = None,
                 seed: int | None = None):
        self.server = None
        if base_url == "local":
            from rcompiler.llm_server import LocalServer

            self.server = LocalServer().start()
            base_url, model = self.server.url, model or self.server.alias
            response_format = response_format or "json_object"  # llama.cpp's schema-constrained JSON
        self.client = LLMClient(base_url, model, api_key, timeout, max_calls, max_tokens_total,
                                response_format or "json_schema", attempts, cache=db, seed=seed)
        self.temperature = temperature
        self.fallback = HeuristicProposer()
        self.disabled: str | None = None
        self.stats: dict = {"endpoint": self.client.base_url, "model": model, "proposals": 0, "fallbacks": 0,
                            "dropped": [], "errors": [], "disabled": None}

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        parent = ctx.schedule.key if ctx.schedule.steps else None
        if self.disabled:
            return self._fallback(ctx, k, [], self.disabled)
        messages = build_messages(ctx, k)
        try:
            text = self.client.complete(messages, answer_schema(ctx, k), self.temperature)
        except BudgetExhausted as err:
            self._disable(f"LLM budget reached ({err}); continuing with the heuristic proposer")
            return self._fallback(ctx, k, [], self.disabled)
        except LLMUnavailable as err:
            self._note("errors", str(err))
            death = self.server.death() if self.server is not None else None
            why = f"the local LLM server died, {death}" if death else f"LLM endpoint unavailable ({str(err)[:200]})"
            self._disable(f"{why[:600]}; continuing with the heuristic proposer")
            return self._fallback(ctx, k, [], self.disabled)
        finally:
            self._usage()
        proposals, dropped, _ = parse_answer(text, ctx, parent)
        for reason in dropped:
            self._note("dropped", reason)
        self.stats["proposals"] += len(proposals)
        if not proposals:
            return self._fallback(ctx, k, proposals, "unusable LLM answer: " + ("; ".join(dropped)[:200] or "empty"))
        if len(proposals) < k:  # top up so every expansion has its share of children
            return self._fallback(ctx, k, proposals, "fewer LLM proposals than asked")
        return proposals[:k]

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _fallback(self, ctx: ProposalContext, k: int, have: list[Proposal], why: str) -> list[Proposal]:
        if len(have) < k:
            self.stats["fallbacks"] += 1
        ctx.seen = set(ctx.seen) | {p.schedule.key for p in have}
        extra = self.fallback.propose(ctx, k - len(have))
        return have + [Proposal(p.schedule, f"heuristic fallback ({why[:160]}): {p.rationale}", "heuristic",
                                p.parent_key) for p in extra]

    def _disable(self, message: str) -> None:
        if not self.disabled:
            self.disabled = message
            self.stats["disabled"] = message
            print(f"rcompiler: {message}", file=sys.stderr)

    def _note(self, kind: str, text: str) -> None:
        if len(self.stats[kind]) < MAX_NOTES:
            self.stats[kind].append(self.client.redact(text)[:300])

    def _usage(self) -> None:
        u = self.client.usage
        self.stats.update(model=self.client.model, calls=u.calls, cached_calls=u.cached, retries=u.retries,
                          prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                          per_call_tokens=u.per_call[-MAX_NOTES:], response_format=self.client.response_format)
