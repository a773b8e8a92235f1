"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the download tests (conftest.py imports it).

It answers what huggingface_hub 2.4.0 asks while fetching a model file by file:
  GET  /api/models/{repo}?blobs=true      the repo's files with their sizes (and whether it is gated)
  HEAD /{repo}/resolve/{revision}/{file}  ETag, X-Repo-Commit, Content-Length; for large (LFS) files a
                                          302 to a second origin, like the Hub's CDN, with X-Linked-Etag/-Size
  GET  the same                           the bytes
Unknown repos get 404 RepoNotFound, gated ones 401 GatedRepo on their files, as the Hub answers
without a token. Every request is recorded, headers included.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx")


@dataclass
class Repo:
    files: dict[str, bytes]
    claimed_sizes: dict[str, int] = field(default_factory=dict)  # sizes the listing reports instead of the real ones
    gated: bool = False
    gate_listed: bool = True  # False: only the file requests reveal the gate (401), not the listing
    seconds_per_chunk: float = 0.0  # slow the CDN down so progress can be watched

    @property
    def commit(self) -> str:
        return hashlib.sha1(json.dumps(sorted(self.files)).encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def file(self) -> str | None:
        """The repo file asked for, by /{repo}/resolve/{revision}/{file} or /cdn/{repo}/{file}."""
        if self.path.startswith("/cdn/"):
            return self.path.split("/", 4)[4]
        parts = self.path.split("/resolve/", 1)
        return parts[1].split("/", 1)[1] if len(parts) == 2 else None


def _lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


class FakeHub:
    CHUNK = 16 * 1024

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.repos = repos
        self.requests: list[Request] = []
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), self._handler()) for _ in range(2)]
        self.endpoint, self.cdn = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)

    def start(self) -> FakeHub:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def files_fetched(self) -> list[str]:
        """The repo files whose bytes were asked for, in order (a GET from the CDN counts for its file)."""
        return [request.file for request in self.requests if request.method == "GET" and request.file is not None]

    def _cdn_file(self, path: str) -> tuple[Repo, bytes] | None:
        """/cdn/{repo}/{name}: a large file's bytes (a real CDN names them by hash; names keep the log readable)."""
        for repo_id, repo in self.repos.items():
            name = path.removeprefix(f"/cdn/{repo_id}/")
            if name != path and name in repo.files:
                return repo, repo.files[name]
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                if path.startswith("/api/models/"):
                    self._model_info(path.removeprefix("/api/models/"))
                elif path.startswith("/cdn/") and hub._cdn_file(path):
                    repo, data = hub._cdn_file(path)
                    self._send(200, {"Content-Length": str(len(data))}, data if body else b"", repo.seconds_per_chunk)
                elif "/resolve/" in path:
                    self._resolve(path, body)
                else:
                    self._send(404, {"Content-Length": "0"})

            def _model_info(self, repo_id: str) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound")
                siblings = []
                for name, data in repo.files.items():
                    size = repo.claimed_sizes.get(name, len(data))
                    sibling = {"rfilename": name, "size": size, "blobId": hashlib.sha1(data).hexdigest()}
                    if _lfs(name):
                        sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": size, "pointerSize": 134}
                    siblings.append(sibling)
                info = {"id": repo_id, "sha": repo.commit, "private": False, "gated": "manual" if repo.gated and repo.gate_listed else False,
                        "siblings": siblings}
                payload = json.dumps(info).encode()
                self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(payload))}, payload)

            def _resolve(self, path: str, body: bool) -> None:
                repo_part, rest = path.lstrip("/").split("/resolve/", 1)
                name = rest.split("/", 1)[1]
                repo = hub.repos.get(repo_part)
                if repo is None:
                    return self._error(404, "RepoNotFound")
                if repo.gated and "authorization" not in {k.lower() for k in self.headers}:
                    return self._error(401, "GatedRepo")
                if name not in repo.files:
                    return self._error(404, "EntryNotFound", {"X-Repo-Commit": repo.commit})
                data = repo.files[name]
                headers = {"X-Repo-Commit": repo.commit}
                if _lfs(name):  # like the Hub: a redirect to the CDN, the file's facts on the redirect itself
                    digest = hashlib.sha256(data).hexdigest()
                    headers |= {"Location": f"{hub.cdn}/cdn/{repo_part}/{name}", "X-Linked-Etag": f'"{digest}"',
                                "X-Linked-Size": str(len(data)), "ETag": f'"{digest}"', "Content-Length": "0"}
                    return self._send(302, headers)
                headers |= {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "Content-Length": str(len(data))}
                self._send(200, headers, data if body else b"")

            def _error(self, status: int, code: str, extra: dict | None = None) -> None:
                self._send(status, {"X-Error-Code": code, "Content-Length": "0", **(extra or {})})

            def _send(self, status: int, headers: dict, data: bytes = b"", seconds_per_chunk: float = 0.0) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                for start in range(0, len(data), hub.CHUNK):
                    self.wfile.write(data[start:start + hub.CHUNK])
                    if seconds_per_chunk:
                        self.wfile.flush()
                        time.sleep(seconds_per_chunk)

        return Handler
