"""What the LLM reads and how its answer is checked.

The prompt carries what a performance engineer looks at: the op and its loops,
the machine, the vocabulary with this kernel's legal parameters, the current
schedule and the measured history around it. The answer is JSON
`{"rationale": str, "schedules": [[step, ...], ...]}`; the schema below
constrains it on servers that support schemas.
"""
from __future__ import annotations

import json

from rcompiler.transforms import CONTRACTION_STRATEGIES, STEP_TYPES, Schedule, ScheduleError, check, loop_nest

from .context import Evaluated, Proposal, ProposalContext

SYSTEM = ("You are an expert compiler performance engineer. You tune an MLIR Linalg kernel for one CPU by "
          "choosing transform-dialect schedules. Reply with JSON only.")


def _divisors(n: int, limit: int = 14) -> list[int]:
    ds = [d for d in range(1, n + 1) if n % d == 0]
    if len(ds) <= limit:
        return ds
    step = len(ds) / limit
    return sorted({ds[int(i * step)] for i in range(limit)} | {ds[-1]})


def vocabulary(ctx: ProposalContext) -> str:
    nest = loop_nest(ctx.kernel)
    lines = []
    for name, cls in STEP_TYPES.items():
        lines.append(f"- {name}: {cls.about}")
    lines.append(f"tile sizes: one per loop [{', '.join(nest.names)}], 0 = untiled; each must divide its "
                 "loop (or the enclosing tile); divisors: "
                 + "; ".join(f"{n}: {_divisors(e)}" for n, e in zip(nest.names, nest.extents)))
    lines.append(f"contraction strategies: {', '.join(CONTRACTION_STRATEGIES)}; parallel threads <= {ctx.threads}")
    return "\n".join(lines)


def _result(e: Evaluated | None) -> str:
    if e is None:
        return "not measured (the naive lowering)"
    return f"{e.speedup:.1f}x faster than naive" if e.ok and e.speedup else f"FAILED {e.status}: {e.reason[:200]}"


def build_messages(ctx: ProposalContext, k: int) -> list[dict]:
    k_ = ctx.kernel
    nest = loop_nest(k_)
    hw = ctx.hardware
    ops = ", ".join(f"{o.name}{list(o.sizes)}" for o in k_.structure)
    parts = [
        f"Kernel {k_.label}: {ops}; main op loops " + nest.describe() + f"; dtype {k_.args[0].dtype}; "
        f"{k_.flops / 1e9:.3f} GFLOP.",
        f"CPU: {hw.describe()}; {ctx.threads} thread(s) allowed.",
        "Steps:\n" + vocabulary(ctx),
        f"Current schedule: {json.dumps(ctx.schedule.to_json())} -> {_result(ctx.result)}",
    ]
    if ctx.ancestors:
        parts.append("Its ancestors: " + " | ".join(f"{e.schedule} -> {_result(e)}" for e in ctx.ancestors[-3:]))
    if ctx.siblings:
        parts.append("Already tried from here: " + " | ".join(f"{e.schedule} -> {_result(e)}" for e in ctx.siblings[-4:]))
    failures = [e for e in ctx.history if not e.ok][-2:]
    if failures:
        parts.append("Recent failures: " + " | ".join(f"{e.schedule} -> {_result(e)}" for e in failures))
    if ctx.best is not None:
        parts.append(f"Best so far: {json.dumps(ctx.best.schedule.to_json())} -> {_result(ctx.best)}")
    parts.append(f'Propose {k} new complete schedules likely to run faster. Answer as JSON: {{"rationale": '
                 f'"<one or two sentences>", "schedules": [[{{"step": "tile", "sizes": [...]}}, '
                 f'{{"step": "vectorize"}}, ...], ...]}}')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


def answer_schema(ctx: ProposalContext, k: int) -> dict:
    """JSON schema of the answer, tight enough that grammar-constrained decoding yields usable steps."""
    nest = loop_nest(ctx.kernel)
    sizes_enum = sorted({0, *[d for e in nest.extents for d in _divisors(e)]})
    n = len(nest.extents)
    step_schemas = [
        {"type": "object", "properties": {"step": {"const": "tile"},
                                          "sizes": {"type": "array", "items": {"enum": sizes_enum},
                                                    "minItems": n, "maxItems": n}},
         "required": ["step", "sizes"], "additionalProperties": False},
        {"type": "object", "properties": {"step": {"const": "contraction"},
                                          "strategy": {"enum": list(CONTRACTION_STRATEGIES)}},
         "required": ["step", "strategy"], "additionalProperties": False},
        {"type": "object", "properties": {"step": {"const": "unroll"}, "loop": {"type": "integer"},
                                          "factor": {"enum": [2, 4, 8]}},
         "required": ["step", "loop", "factor"], "additionalProperties": False},
    ]
    for flag in ("vectorize", "hoist", "peel", "decompose", "fuse", "im2col"):
        step_schemas.append({"type": "object", "properties": {"step": {"const": flag}}, "required": ["step"],
                             "additionalProperties": False})
    if ctx.threads > 1:
        step_schemas.append({"type": "object", "properties": {"step": {"const": "parallel"},
                                                              "threads": {"enum": [ctx.threads]},
                                                              "loop": {"type": "integer"}},
                             "required": ["step", "threads"], "additionalProperties": False})
    return {"type": "object", "properties": {
        "rationale": {"type": "string"},
        "schedules": {"type": "array", "minItems": 1, "maxItems": k,
                      "items": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"anyOf": step_schemas}}}},
        "required": ["rationale", "schedules"]}


def parse_answer(text: str, ctx: ProposalContext, parent: str | None) -> tuple[list[Proposal], list[str], str]:
    """Valid proposals, the reasons the other parts were dropped, and the model's rationale."""
    try:
        data = json.loads(text, strict=False)  # small models put raw newlines inside strings
    except (json.JSONDecodeError, TypeError) as err:
        return [], [f"answer is not JSON: {err}"], ""
    if not isinstance(data, dict) or not isinstance(data.get("schedules"), list):
        return [], ["answer has no 'schedules' list"], ""
    rationale = str(data.get("rationale", ""))[:300]
    out, dropped, keys = [], [], set(ctx.seen)
    for i, item in enumerate(data["schedules"]):
        try:
            schedule = Schedule.from_json(item)
        except ScheduleError as err:
            dropped.append(f"schedule {i + 1}: {err}")
            continue
        reason = check(schedule, ctx.kernel) if schedule.steps else "empty schedule"
        if reason:
            dropped.append(f"schedule {i + 1}: {reason}")
        elif schedule.key in keys:
            dropped.append(f"schedule {i + 1}: already measured")
        else:
            keys.add(schedule.key)
            out.append(Proposal(schedule, f"llm: {rationale}" if rationale else "llm", "llm", parent))
    return out, dropped, rationale
