"""A local HTTP server on 127.0.0.1 whose misbehaviour a test switches on, for download tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "slow", "half", "html", "wrong", "error-then-ok", "no-range", "half-no-range", "hang", "missing",
         "half-no-length", "wrong-no-length")


@dataclass
class State:
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "ok"
    requests: list[dict[str, str]] = field(default_factory=list)
    delay: float = 0.05  # seconds between chunks in "slow" mode
    stop: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    state: State  # set on the subclass the server uses
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        state = self.state
        state.requests.append({"path": self.path, "range": self.headers.get("Range", ""),
                               "accept-encoding": self.headers.get("Accept-Encoding", "")})
        count = len(state.requests)
        mode = state.mode
        body = state.files.get(self.path.rsplit("/", 1)[-1])
        if mode == "hang":
            state.stop.wait(30)  # never answers within any sane read timeout
            return
        if body is None or mode == "missing":
            return self._send(404, b"not found", "text/plain")
        if mode == "html":
            return self._send(200, b"<!doctype html><html><body>Please log in</body></html>", "text/html; charset=utf-8")
        if mode == "error-then-ok" and count == 1:
            return self._send(500, b"try later", "text/plain")
        if mode in ("wrong", "wrong-no-length"):
            body = bytes(b ^ 0xFF for b in body)
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and mode not in ("no-range", "half-no-range"):
            start = int(ranged[6:].split("-")[0])
            if start >= len(body):
                return self._send(416, b"", "text/plain")
        payload = body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode.endswith("no-length"):  # the body ends when the connection closes, as HTTP/1.0 servers send it
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(payload)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if mode in ("half", "half-no-range", "half-no-length") and count == 1:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        step = max(1, len(payload) // 20)
        for i in range(0, len(payload), step):
            self.wfile.write(payload[i : i + step])
            if mode == "slow":
                self.wfile.flush()
                time.sleep(state.delay)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer:
    """``with FileServer() as server: server.add("w.pth", data); server.url("w.pth")``."""

    def __init__(self) -> None:
        self.state = State()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, name: str, data: bytes) -> str:
        self.state.files[name] = data
        return self.url(name)

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/files/{name}"

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.state.mode = mode
        self.state.requests.clear()

    @property
    def requests(self) -> list[dict[str, str]]:
        return self.state.requests
