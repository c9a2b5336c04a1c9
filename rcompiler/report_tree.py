"""One study's search tree as HTML, from the samples of its report.json.

A node is a measured schedule; the root is the naive lowering (no transforms). An edge reads
what the child changed in its parent's steps and why the proposer proposed it. Subtrees are
<details> elements: the browser collapses them, with no script needed.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from html import escape

OPEN_ALL_UP_TO = 60  # nodes; a larger tree opens only along the best path


def best(samples: list[dict]) -> dict | None:
    """The fastest verified sample, ties broken by hash as the tuner and the database break them."""
    ok = [s for s in samples if s["status"] == "ok" and s["seconds"]]
    return min(ok, key=lambda s: (s["seconds"], s["hash"])) if ok else None


def parents(samples: list[dict]) -> dict[int, dict | None]:
    """Each sample's parent sample by seq, None under the root: a parent not among the samples
    (or not drawn before its child) hangs the child under the root."""
    by_key = {s["hash"]: s for s in samples}
    out = {}
    for s in samples:
        p = by_key.get(s.get("parent"))
        out[s["seq"]] = p if p is not None and p["seq"] < s["seq"] else None
    return out


def best_path(samples: list[dict]) -> list[int]:
    """Seqs from the root's child down to the best sample."""
    up, node, path = parents(samples), best(samples), []
    while node is not None:
        path.append(node["seq"])
        node = up[node["seq"]]
    return path[::-1]


def step_text(step: dict) -> str:
    """As Step.__str__ prints it: name(arg=value, ...), unset arguments left out."""
    args = ", ".join(f"{k}={v}" for k, v in step.items() if k != "step" and v is not None)
    return f"{step['step']}({args})"


def schedule_text(schedule: list[dict]) -> str:
    return " ; ".join(map(step_text, schedule)) or "(no transforms)"


def edit(parent: list[dict], child: list[dict]) -> str:
    """The steps a child adds (+) and drops (−) relative to its parent."""
    before, after = list(map(step_text, parent)), list(map(step_text, child))
    return " ".join([f"+ {s}" for s in _minus(after, before)] + [f"− {s}" for s in _minus(before, after)]) \
        or "(same steps)"


def _minus(items: list[str], taken: list[str]) -> list[str]:
    """A multiset difference, in the order of `items`."""
    left, out = Counter(taken), []
    for x in items:
        if left[x]:
            left[x] -= 1
        else:
            out.append(x)
    return out


def duration(seconds: float | None) -> str:
    if not seconds:
        return "–"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def times(ratio: float | None) -> str:
    return f"{ratio:.1f}×" if ratio else "–"


def tree_html(samples: list[dict], naive_seconds: float | None) -> str:
    """Nested lists under the naive root; each node an <li class="node"> with data-seq, classed
    best-path along the path to the best sample and best at its end."""
    up, on_path, top = parents(samples), set(best_path(samples)), best(samples)
    children: dict[int | None, list[dict]] = defaultdict(list)
    for s in samples:
        children[up[s["seq"]]["seq"] if up[s["seq"]] else None].append(s)
    open_all = len(samples) <= OPEN_ALL_UP_TO

    def node(s: dict) -> str:
        kids = children.get(s["seq"], [])
        classes = ["node", "ok" if s["status"] == "ok" else "failed"]
        classes += (["best-path"] if s["seq"] in on_path else []) + (["best"] if s is top else [])
        attrs = f'class="{" ".join(classes)}" data-seq="{s["seq"]}" data-status="{escape(s["status"])}"'
        row = _row(s, up[s["seq"]], len(kids))
        if not kids:
            return f'<li {attrs}><span class="row">{row}</span></li>'
        opened = " open" if open_all or s["seq"] in on_path else ""
        return (f'<li {attrs}><details{opened}><summary class="row">{row}</summary>'
                f'<ul>{"".join(map(node, kids))}</ul></details></li>')

    root = f'<span class="seq">naive</span> (no transforms) <span class="m">{duration(naive_seconds)} · 1.0×</span>'
    return (f'<ul class="tree"><li class="root"><details open><summary class="row">{root}</summary>'
            f'<ul>{"".join(map(node, children.get(None, [])))}</ul></details></li></ul>')


def _row(s: dict, parent: dict | None, kids: int) -> str:
    """The edge into a node (steps changed, the proposer's rationale) and what the node measured."""
    if s["status"] == "ok":
        measured = (f'<span class="m">{duration(s["seconds"])} · {times(s["speedup"])}'
                    + (f' · {s["gflops"]:.1f} GFLOP/s' if s.get("gflops") else "") + "</span>")
    else:
        reason = s.get("reason") or ""
        measured = (f'<span class="fail">{escape(s["status"])}</span>'
                    f'<span class="reason" title="{escape(reason)}">{escape(reason[:240])}</span>')
    count = f'<span class="count">{kids} child{"ren" if kids > 1 else ""}</span>' if kids else ""
    return (f'<span class="seq">#{s["seq"] + 1}</span> <span class="edit">'
            f'{escape(edit(parent["schedule"] if parent else [], s["schedule"]))}</span> {measured}{count}'
            f'<span class="why">{escape(s.get("proposer") or "")}: {escape(s.get("rationale") or "")}</span>'
            f'<code class="sched">{escape(schedule_text(s["schedule"]))}</code>')
