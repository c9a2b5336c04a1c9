"""The ablation: children drawn uniformly from the legal edits (or random schedules at the root)."""
from __future__ import annotations

from .context import Proposal, ProposalContext
from .edits import all_edits, legal, random_schedule


class RandomProposer:
    name = "random"

    def propose(self, ctx: ProposalContext, k: int) -> list[Proposal]:
        out: list[Proposal] = []
        seen = set(ctx.seen)
        parent = ctx.schedule.key if ctx.schedule.steps else None
        if not ctx.schedule.steps:
            for _ in range(20 * k):
                s = random_schedule(ctx.kernel, ctx.rng, ctx.threads)
                if s.key not in seen:
                    seen.add(s.key)
                    out.append(Proposal(s, "random schedule", self.name, parent))
                if len(out) == k:
                    break
            return out
        edits = legal(ctx.kernel, all_edits(ctx.kernel, ctx.schedule, ctx.threads, ctx.rng), seen)
        ctx.rng.shuffle(edits)
        return [Proposal(s, f"random edit: {desc}", self.name, parent) for desc, s in edits[:k]]
