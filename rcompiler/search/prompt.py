"""What the LLM reads and how its answer is checked.

The prompt carries what a performance engineer looks at: the op and its loops,
the payload IR and how each operand is laid out (from the indexing maps), the
machine, the vocabulary with this kernel's legal parameters, the current
schedule and the measured history around it. The answer is JSON
`{"rationale": str, "schedules": [[step, ...], ...]}`; the schema below
constrains it on servers that support schemas.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields

from rcompiler.transforms import (CONTRACTION_STRATEGIES, STEP_TYPES, Schedule, ScheduleError, applicable, check,
                                  loop_nest)

from .context import Evaluated, Proposal, ProposalContext

SYSTEM = ("You are an expert compiler performance engineer. You tune an MLIR Linalg kernel for one CPU by "
          "choosing transform-dialect schedules. Reply with JSON only.")


def _divisors(n: int, limit: int = 14) -> list[int]:
    ds = [d for d in range(1, n + 1) if n % d == 0]
    if len(ds) <= limit:
        return ds
    step = len(ds) / limit
    return sorted({ds[int(i * step)] for i in range(limit)} | {ds[-1]})


def usable_steps(ctx: ProposalContext) -> dict:
    """The vocabulary's steps that can apply to this kernel (no im2col for a matmul)."""
    return {name: cls for name, cls in STEP_TYPES.items() if applicable(name, ctx.kernel, ctx.threads)}


def vocabulary(ctx: ProposalContext) -> str:
    nest = loop_nest(ctx.kernel)
    lines = []
    for name, cls in usable_steps(ctx).items():
        lines.append(f"- {name}: {cls.about}")
    lines.append(f"tile sizes: one per loop [{', '.join(nest.names)}], 0 = untiled; each must divide its "
                 "loop (or the enclosing tile); divisors: "
                 + "; ".join(f"{n}: {_divisors(e)}" for n, e in zip(nest.names, nest.extents)))
    lines.append(f"contraction strategies: {', '.join(CONTRACTION_STRATEGIES)}; parallel threads <= {ctx.threads}")
    return "\n".join(lines)


def operand_layout(ctx: ProposalContext) -> str:
    """How the main op walks each operand, read from its indexing maps: which loops index it,
    which loop is contiguous, and the byte stride of the others (a transposed B shows here)."""
    op = ctx.kernel.structure[ctx.kernel.main_index]
    names = loop_nest(ctx.kernel).names
    parts = []
    for i, o in enumerate(op.operands):
        dims = ", ".join("?" if t is None else "+".join((f"{c}*" if c != 1 else "") + names[loop] for loop, c in t)
                         or "0" for t in o.index)
        strides = [f"{names[loop]} {o.stride_bytes(loop)} B" for loop in range(len(names))
                   if o.stride_bytes(loop) and loop != o.contiguous_loop()]
        contiguous = names[o.contiguous_loop()] if o.contiguous_loop() is not None else "none"
        parts.append(f"{'out' if o.is_output else 'in'}{i} [{dims}] {'x'.join(map(str, o.shape))}: "
                     f"{contiguous} contiguous" + (f", strides {', '.join(strides)}" if strides else ""))
    return "; ".join(parts)


def payload_excerpt(ctx: ProposalContext, limit: int = 2500) -> str:
    """The payload function as the compiler sees it, cut to its Linalg ops when long."""
    lines = [ln for ln in ctx.kernel.payload.splitlines() if ln.strip() and not ln.strip().startswith("//")]
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    keep = [ln for ln in lines if "linalg." in ln or "func.func" in ln]
    text = "\n".join(ln if len(ln) < 400 else ln[:400] + " ..." for ln in keep)
    return text[:limit] + ("\n..." if len(text) > limit else "")


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
        "Operands of the main op (from its indexing maps): " + operand_layout(ctx) + ".",
        "Payload IR:\n" + payload_excerpt(ctx),
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
    """JSON schema of the answer, tight enough that grammar-constrained decoding yields usable
    steps. Built from the vocabulary itself: every step that can apply to this kernel is in it."""
    nest = loop_nest(ctx.kernel)
    steps = [_step_schema(cls, ctx, nest) for cls in usable_steps(ctx).values()]
    return {"type": "object", "properties": {
        "rationale": {"type": "string"},
        "schedules": {"type": "array", "minItems": k, "maxItems": k,
                      "items": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"anyOf": steps}}}},
        "required": ["rationale", "schedules"]}


def _step_schema(cls, ctx: ProposalContext, nest) -> dict:
    n = len(nest.extents)
    sizes = sorted({0, *[d for e in nest.extents for d in _divisors(e)]})
    loops = {"enum": list(range(n))}  # enums, not ranges: every grammar-constrained server enforces them

    def ints(length: int, items: dict | None = None) -> dict:
        return {"type": "array", "items": items or {"enum": sizes[1:]},
                "minItems": length, "maxItems": length}

    known = {("tile", "sizes"): ints(n, {"enum": sizes}), ("tile", "interchange"): ints(n, loops),
             ("pad", "multiples"): ints(n), ("pack", "sizes"): ints(3, {"enum": [d for d in sizes if d]}),
             ("pack_channels", "sizes"): ints(2, {"enum": [d for d in sizes if d]}),
             ("contraction", "strategy"): {"enum": list(CONTRACTION_STRATEGIES)},
             ("unroll", "loop"): loops, ("unroll", "factor"): {"enum": [2, 4, 8]},
             ("lanes", "size"): {"enum": [4, 8, 16, 32]},
             ("parallel", "threads"): {"enum": [ctx.threads]}, ("parallel", "loop"): loops}
    props, required = {"step": {"const": cls.name}}, ["step"]
    for f in fields(cls):
        props[f.name] = known.get((cls.name, f.name)) or (
            {"type": "array", "items": {"type": "integer"}} if "tuple" in str(f.type) else
            {"type": "integer"} if str(f.type) == "int" else {"type": "string"})
        if f.default is MISSING:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


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
