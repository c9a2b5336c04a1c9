"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on request (for tests)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    """Answers /v1/chat/completions from a script of behaviours, one per call; the
    last behaviour repeats. A behaviour is ("ok", content), ("status", code or (code, message)),
    ("stall", seconds) or ("raw", body)."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                kind, arg = fake.script[min(fake.calls, len(fake.script) - 1)]
                fake.calls += 1
                if kind == "status":
                    code, message = arg if isinstance(arg, tuple) else (arg, f"fake {arg}")
                    return self._send(code, json.dumps({"error": {"message": message}}))
                if kind == "stall":
                    time.sleep(arg)
                    return self._send(200, "{}")
                if kind == "raw":
                    return self._send(200, arg)
                self._send(200, json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": "fake-model",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": arg}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
