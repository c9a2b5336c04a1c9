"""The commands that reproduce a run: its command line as given, and the Python API call doing the same.

Rerunning either with the same database replays the study's samples instead of measuring them again.
"""
from __future__ import annotations

import os
import shlex

# Options of `python -m rcompiler.tune` that rcompiler.tune(...) takes under the same name (and
# with the same default); the input and --out are translated apart, --quiet dropped.
SAME_NAME = ("budget", "strategy", "proposer", "func", "seed", "threads", "db", "time_budget", "min_time", "cluster")
TRANSLATED = ("mlir_file", "kernel", "shape", "model", "input_shape", "out", "quiet")
LLM = {"llm_model": "model", "llm_base_url": "base_url", "llm_budget": "max_calls",
       "llm_token_budget": "max_tokens_total", "llm_timeout": "timeout", "llm_temperature": "temperature",
       "llm_format": "response_format"}


def command(argv: list[str], out) -> dict:
    """report.json's `command`: the command line (paths in it are relative to `cwd`) and the
    equivalent `rcompiler.tune(...)` call writing to `out`, or None where the CLI used an option
    the API lacks."""
    return {"cli": shlex.join(["python", "-m", "rcompiler.tune", *argv]), "cwd": os.getcwd(),
            "python": python_call(argv, out)}


def python_call(argv: list[str], out) -> str | None:
    from rcompiler.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    changed = [name for name, value in vars(args).items() if value != parser.get_default(name)]
    if set(changed) - set(SAME_NAME) - set(TRANSLATED) - set(LLM):  # e.g. --children: no API argument
        return None
    kwargs = {"shape": args.shape} if args.shape else {}
    if getattr(args, "input_shape", None):
        from rcompiler.cli_common import input_shapes_from_args

        kwargs["input_shapes"] = input_shapes_from_args(args)
    kwargs |= {name: getattr(args, name) for name in SAME_NAME if name in changed}
    if args.proposer == "llm":
        kwargs["llm"] = {key: getattr(args, name) for name, key in LLM.items() if getattr(args, name) is not None}
    kwargs["out"] = str(out)
    target = repr(args.model or args.mlir_file or args.kernel)
    return f"rcompiler.tune({', '.join([target] + [f'{k}={v!r}' for k, v in kwargs.items()])})"


def from_settings(report: dict) -> str:
    """A command line rebuilt from a report that did not record its own (a run through the
    Python API, or an older report): exact for built-in kernels and models; a file is named by its
    stem only, and the timing options are not in the report."""
    from rcompiler.kernels import KERNELS
    from rcompiler.kernels.models import MODELS

    if "module" in report:
        name = report["module"]
        target = ["--model", name] if name in MODELS else [f"{name}.mlir"]
    elif report["kernel"] in KERNELS:
        target = ["--kernel", report["kernel"], "--shape", ",".join(str(v) for v in report["shape"].values())]
    else:
        target = [f"{report['kernel']}.mlir"]
    settings = ["--strategy", report["strategy"], "--budget", str(report["budget"]), "--seed", str(report["seed"]),
                "--threads", str(report["threads"])]
    if report.get("proposer"):
        settings[2:2] = ["--proposer", report["proposer"]]
    return shlex.join(["python", "-m", "rcompiler.tune", *target, *settings])
