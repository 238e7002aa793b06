"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests of models whose weights are on the Hub.

It answers ``huggingface_hub`` (``HF_ENDPOINT``) as the Hub does for ``hf_hub_download``: ``HEAD`` and
``GET /{repo}/resolve/{revision}/{file}`` with the commit (``X-Repo-Commit``), the file's sha256 as its
LFS object id (``X-Linked-Etag``) and its size, and the Hub's error codes (``X-Error-Code``: no such
repository, revision or file; a gated repository). A test switches on misbehaviour with
:meth:`LocalHub.set_mode`: ``wrong`` (bytes other than the sha256 it states), ``gated``, ``down`` (503).
:func:`zoo.testing.local_hub` is the pytest fixture that starts one.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

#: How the stand-in answers: as the Hub does, with other bytes than the sha256 it states, as for a gated
#: repository, or as a Hub that is down.
MODES = ("ok", "wrong", "gated", "down")


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    commit: str = "0" * 40
    branches: tuple[str, ...] = ("main",)


@dataclass
class State:
    repos: dict[str, Repo] = field(default_factory=dict)
    mode: str = "ok"
    requests: list[tuple[str, str]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        state = self.state
        state.requests.append((self.command, self.path))
        path = unquote(self.path.split("?")[0]).lstrip("/")
        owner, _, rest = path.partition("/")
        name, _, rest = rest.partition("/")
        verb, _, rest = rest.partition("/")
        revision, _, filename = rest.partition("/")
        repo = state.repos.get(f"{owner}/{name}")
        if state.mode == "down":
            return self._error(503, "", body)
        if verb != "resolve" or repo is None:
            return self._error(404, "RepoNotFound", body)
        if state.mode == "gated":
            return self._error(403, "GatedRepo", body)
        if revision not in (*repo.branches, repo.commit):
            return self._error(404, "RevisionNotFound", body)
        if filename not in repo.files:
            return self._error(404, "EntryNotFound", body)
        data = repo.files[filename]
        sha256 = hashlib.sha256(data).hexdigest()
        if state.mode == "wrong":  # a mirror that serves other bytes than the object id it states
            data = bytes(b ^ 0xFF for b in data)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("X-Linked-Etag", f'"{sha256}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("ETag", f'"{sha256}"')
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _error(self, status: int, code: str, body: bool) -> None:
        message = f"{code or 'Service Unavailable'}".encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if body:
            self.wfile.write(message)


class LocalHub:
    """``with LocalHub() as hub: hub.add("timm/x", "model.safetensors", data)``, then ``HF_ENDPOINT=hub.endpoint``."""

    def __init__(self) -> None:
        self.state = State()
        handler = type("BoundHubHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: str, filename: str, data: bytes, commit: str | None = None) -> str:
        """Put a file in ``repo`` (a new commit, unless ``commit`` is given); returns the file's sha256."""
        entry = self.state.repos.setdefault(repo, Repo())
        entry.files[filename] = data
        entry.commit = commit or hashlib.sha1(repo.encode() + b"".join(sorted(entry.files.values()))).hexdigest()
        return hashlib.sha256(data).hexdigest()

    def set_mode(self, mode: str) -> None:
        """Answer from now on as ``mode`` says (:data:`MODES`): ``ok``, ``wrong``, ``gated`` or ``down``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.state.mode = mode
        self.state.requests.clear()

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.state.requests
