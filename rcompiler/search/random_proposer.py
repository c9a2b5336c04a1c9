"""The ablation: children drawn uniformly from the legal edits (or random schedules at the root)."""
from __future__ import annotations

from .context import Proposal, ProposalContext
from .edits import all_edits, fresh_random_schedules, legal


class RandomProposer:
    name = "random"

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        parent = ctx.schedule.key if ctx.schedule.steps else None
        if not ctx.schedule.steps:
            fresh = fresh_random_schedules(ctx.kernel, ctx.rng, k, set(ctx.seen), ctx.threads)
            return [Proposal(s, "random schedule", self.name, parent) for s in fresh]
        edits = legal(ctx.kernel, all_edits(ctx.kernel, ctx.schedule, ctx.threads, ctx.rng), set(ctx.seen))
        ctx.rng.shuffle(edits)
        return [Proposal(e.schedule, f"random edit: {e.text}", self.name, parent, e) for e in edits[:k]]
