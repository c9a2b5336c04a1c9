"""report.html: a run explained in one self-contained page. Styles, the script and the SVG charts
are inline, and the page's Content-Security-Policy lets it fetch nothing, so it opens offline.

A kernel run: what was measured, best so far against samples, the search tree, the best script and
the command that reproduces the run. A module (or model) run: each task's share of the end-to-end
time before and after, what stayed naive and why, then each task's samples, chart and tree.
A kernel report may name peers' times ("peers": {name: seconds}); each is a line on the chart.
"""
from __future__ import annotations

from collections import Counter
from html import escape

from rcompiler import report_chart, reproduce
from rcompiler.report_tree import best, duration, schedule_text, times, tree_html

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; margin: 0 auto; max-width: 1180px; padding: 0 16px 40px; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #d8dde6; padding: 8px 0; z-index: 1; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 22px 0 6px; }
button, label.toggle { font: inherit; font-size: 13px; margin-right: 6px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.facts dt { color: #5b6475; } dl.facts dd { margin: 0; }
code, pre, .edit, .sched { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
pre { background: #f5f7fa; border: 1px solid #d8dde6; padding: 8px; overflow-x: auto; white-space: pre-wrap; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e7ee; padding: 4px 6px; text-align: left; vertical-align: top; }
td.share { min-width: 130px; } .bar { display: inline-block; height: 10px; background: #1f5fbf; margin-right: 4px; }
td.share.after .bar { background: #e07b00; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 18px; }
ul.tree { padding-left: 0; }
ul.tree ul { border-left: 1px dotted #aab3c2; }
.row { display: block; padding: 2px 4px; border-radius: 3px; }
summary.row { cursor: pointer; }
.row > span, .row > code { margin-right: 6px; }
.seq { color: #5b6475; font-variant-numeric: tabular-nums; }
.edit { color: #1d2330; }
.m { font-weight: 600; color: #1b5e20; white-space: nowrap; }
.fail { font-weight: 600; color: #fff; background: #c62828; border-radius: 3px; padding: 0 4px; }
.reason { color: #8a1c1c; font-size: 12px; }
.why, .sched { display: block; color: #5b6475; font-size: 12px; margin-left: 2px; }
.sched { display: none; color: #30405a; }
body.show-sched .sched { display: block; }
.count { color: #8390a5; font-size: 12px; white-space: nowrap; }
li.best-path > .row, li.best-path > details > summary.row { background: #fff3c4; }
li.best-path > .row .edit, li.best-path > details > summary.row .edit { font-weight: 700; }
li.best > .row, li.best > details > summary.row { outline: 2px solid #e0a800; }
.note { color: #5b6475; font-size: 13px; }
"""

JS = """
const nodes = sel => document.querySelectorAll(sel);
const openAll = open => nodes('.tree li.node > details').forEach(d => { d.open = open; });
document.getElementById('expand').onclick = () => openAll(true);
document.getElementById('collapse').onclick = () => openAll(false);
document.getElementById('best-path').onclick = () => {
  openAll(false);
  nodes('.tree li.best-path > details').forEach(d => { d.open = true; });
  const best = document.querySelector('.tree li.best');
  if (best) best.scrollIntoView({block: 'center'});
};
document.getElementById('schedules').onchange = e => document.body.classList.toggle('show-sched', e.target.checked);
"""

HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title><style>{css}</style></head><body>
<header><h1>{title}</h1><div class="toolbar"><button id="expand">expand all</button>
<button id="collapse">collapse all</button><button id="best-path">best path only</button>
<label class="toggle"><input type="checkbox" id="schedules"> full schedules</label></div></header>
"""

SHARES = ('<p class="note">A task\'s share is its weight × its time alone over the module\'s time end to end, '
          "before (naive) and after (the program as composed); timed apart, shares need not add up to 100%.</p>")

SHORT_SCRIPT = 60  # lines; a longer best.mlir starts folded

LEGEND = ('<p class="note">A node is a measured schedule, its parent the schedule the proposer edited (the root: no '
          'transforms). Each line reads the steps the child added (+) and dropped (−), its time, speedup over naive '
          'and GFLOP/s, or its failure class, then the proposer and its rationale. '
          '<span style="background:#fff3c4">Highlighted</span>: the path to the best schedule.</p>')


def page(report: dict, script: str | None = None) -> str:
    """The page for a report.json's data; `script` is the run's best.mlir."""
    title = report.get("module") or report.get("label") or "run"
    body = _module(report) if "module" in report else _kernel(report)
    return (HEAD.format(title=escape(title), css=CSS) + body + _reproduce(report, script)
            + f"<script>{JS}</script></body></html>\n")


def _kernel(r: dict) -> str:
    samples = r.get("samples") or []
    naive, numpy, top = r.get("naive_seconds"), r.get("numpy_seconds"), best(samples)
    facts = [("search", _search(r)), ("hardware", _hardware(r)),
             ("samples", f"{len(samples)} of a budget of {r['budget']}" + (
                 f" ({r['samples_measured_now']} measured in this run)" if "samples_measured_now" in r else "")),
             ("naive", duration(naive)),
             ("NumPy", f"{duration(numpy)}" + (f" · {times(naive / numpy)}" if naive and numpy else "")
                       + (f" ({escape(', '.join(r['numpy_blas']))})" if r.get("numpy_blas") else "")),
             ("best", _best_text(top, numpy)),
             ("first guess", _first_text(r.get("first_guess"))),
             ("failures", _failures(samples)), *_ending(r)]
    chart = report_chart.svg(samples, _lines(naive, numpy, r.get("peers")), r.get("label", ""))
    return (_facts(facts) + f"<h2>Best so far</h2>{chart}"
            + f'<h2>Search tree</h2>{LEGEND}<section class="study">{tree_html(samples, naive)}</section>')


def _module(r: dict) -> str:
    tasks = r.get("tasks") or []
    facts = [("function", f"@{r.get('function')}"), ("search", _search(r)), ("hardware", _hardware(r)),
             ("samples", f"{r.get('samples_done')} of a budget of {r['budget']}, over {len(tasks)} distinct tasks"),
             ("end to end", f"naive {duration(r.get('naive_seconds'))} → best {duration(r.get('best_seconds'))} · "
                            f"{times(r.get('best_speedup'))}"
                            + (f" · {r['best_gflops']:.1f} GFLOP/s" if r.get("best_gflops") else "")),
             *_ending(r)]
    rows = "".join(
        f"<tr><td><code>{escape(t['label'])}</code><br>{escape(' + '.join(t['ops']))}</td>"
        f"<td>{escape(', '.join(t['functions']))} (×{t['weight']})</td><td>{t['samples']}</td>"
        f"<td>{duration(t.get('naive_seconds'))}</td><td>{duration(t.get('best_seconds'))}</td>"
        f"<td>{times(t.get('speedup'))}</td>{_share(t.get('share_before'), 'before')}"
        f"{_share(t.get('share_after'), 'after')}<td>{escape(t['status'])}</td></tr>" for t in tasks)
    head = "".join(f"<th>{h}</th>" for h in ("task", "functions", "samples", "naive", "best", "speedup",
                                              "share before", "share after", "status"))
    table = f'<h2>Tasks</h2>{SHARES}<table class="tasks"><tr>{head}</tr>{rows}</table>'
    return _facts(facts) + table + _naive(r) + "".join(_task(i, t) for i, t in enumerate(tasks))


def _task(i: int, t: dict) -> str:
    samples = t.get("samples_detail") or []
    naive, numpy = t.get("naive_seconds"), t.get("numpy_seconds")
    facts = [("status", escape(t["status"])), ("naive", duration(naive)), ("best", _best_text(best(samples), numpy)),
             ("first guess", _first_text(t.get("first_guess"))), *_ending(t)]
    chart = report_chart.svg(samples, _lines(naive, numpy, None), t["label"])
    return (f'<section class="study" data-task="{i}"><h2>Task {i + 1}: <code>{escape(t["label"])}</code></h2>'
            f"{_facts(facts)}{chart}<h3>Search tree</h3>{'' if i else LEGEND}{tree_html(samples, naive)}</section>")


def _naive(r: dict) -> str:
    """What runs unscheduled: groups no task could be made of, and tasks whose schedule was left out."""
    items = [f"<li>@{escape(n['function'])} ({escape(' + '.join(n['ops']))}): {escape(n['reason'])}</li>"
             for n in r.get("naive_tasks") or []]
    items += [f"<li><code>{escape(t['label'])}</code>: {escape(t['status'])}</li>"
              for t in r.get("tasks") or [] if t["status"] != "in the program"]
    if r.get("naive_ops"):
        items.append(f"<li>left in @{escape(str(r.get('function')))}: {escape(', '.join(r['naive_ops']))}</li>")
    return "<h2>Stayed naive</h2>" + (f'<ul class="naive">{"".join(items)}</ul>' if items
                                       else '<p class="note">nothing: every task runs its tuned schedule.</p>')


def _reproduce(r: dict, script: str | None) -> str:
    cmd = r.get("command")
    if cmd:
        out = f"<p>The command, run in <code>{escape(cmd['cwd'])}</code>:</p><pre>{escape(cmd['cli'])}</pre>"
        if cmd.get("python"):
            out += f"<p>From Python:</p><pre>import rcompiler\n{escape(cmd['python'])}</pre>"
    else:
        out = ("<p>This run did not record its command line (it ran through the Python API, or before reports "
               f"did); from its settings:</p><pre>{escape(reproduce.from_settings(r))}</pre>")
    out += '<p class="note">With the same database, rerunning replays the samples measured and goes on.</p>'
    if "module" in r:
        out += ("<p>The script applies to the outlined module beside it, with upstream MLIR:</p><pre>mlir-opt "
                "payload.mlir --transform-preload-library=transform-library-paths=best.mlir "
                "--transform-interpreter</pre>")
    if not script:
        return f'<h2>Reproduce</h2>{out}<p class="note">no best.mlir: nothing verified.</p>'
    n = script.count("\n") + 1
    return (f'<h2>Reproduce</h2>{out}<h3>The best transform script</h3><details{" open" if n <= SHORT_SCRIPT else ""}>'
            f'<summary>best.mlir ({n} lines)</summary><pre class="script">{escape(script)}</pre></details>')


def _lines(naive: float | None, numpy: float | None, peers: dict | None) -> dict[str, float]:
    """Reference speedups over naive: NumPy, and peers (name -> seconds) where the report has them."""
    refs = {"NumPy": numpy, **(peers or {})}
    return {name: naive / s for name, s in refs.items() if naive and s}


def _best_text(top: dict | None, numpy: float | None) -> str:
    if top is None:
        return "no schedule verified"
    return (f"{duration(top['seconds'])} · {times(top['speedup'])} over naive"
            + (f" · {top['gflops']:.1f} GFLOP/s" if top.get("gflops") else "")
            + (f" · {numpy / top['seconds']:.2f}× NumPy" if numpy else "")
            + f" (sample #{top['seq'] + 1}): <code>{escape(schedule_text(top['schedule']))}</code>")


def _first_text(first: dict | None) -> str | None:
    if not first:
        return None
    measured = (f"{duration(first['seconds'])} · {times(first['speedup'])}" if first.get("seconds")
                else escape(first["status"]))
    gain = f"; the search's best is {first['best_over_first']:.2f}× faster" if first.get("best_over_first") else ""
    return f"{measured}{gain}: <code>{escape(first['schedule_text'])}</code>"


def _failures(samples: list[dict]) -> str:
    counts = Counter(s["status"] for s in samples if s["status"] != "ok")
    return escape(", ".join(f"{status} × {n}" for status, n in counts.items())) or "none"


def _search(r: dict) -> str:
    who = f" + {r['proposer']} proposer" if r.get("proposer") else ""
    return escape(f"{r['strategy']}{who}, seed {r['seed']}, {r['threads']} thread(s)")


def _hardware(r: dict) -> str:
    hw = r.get("hardware") or {}
    return escape(f"{hw.get('model')}, {hw.get('cores')} cores, {' '.join(hw.get('isa') or [])} "
                  f"(fingerprint {hw.get('fingerprint')})")


def _share(share: float | None, when: str) -> str:
    if share is None:
        return f'<td class="share {when}">–</td>'
    bar = f'<span class="bar" style="width:{min(share, 1) * 90:.0f}px"></span>'
    return f'<td class="share {when}">{bar}{share:.1%}</td>'


def _ending(r: dict) -> list[tuple[str, str | None]]:
    return [("stopped early", escape(r["stopped"]) if r.get("stopped") else None),
            ("wall time", f"{r['wall_seconds']:.1f} s" if r.get("wall_seconds") else None)]


def _facts(facts: list[tuple[str, str | None]]) -> str:
    """A definition list; values are HTML already (escaped where they come from the report)."""
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts if v) + "</dl>"
