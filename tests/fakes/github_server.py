"""A fake GitHub REST API on 127.0.0.1 for the real PyGithub client: repos, branches, contents, auth, rate limits.

    with FakeGitHub() as gh:                         # uvicorn on a free port -> GITHUB_API_URL=gh.url
        sha = gh.add_repo("aineko-dev/aineko", {"docs/a.md": "# A", "docs/sub/b.md": "# B"}, branch="develop")
        sha2 = gh.push("aineko-dev/aineko", {"docs/a.md": "# A, new"}, branch="develop")   # a new commit
        gh.tokens = {"ghp_good"}                     # a request with any other token gets 401 Bad credentials
        gh.rate_limit(remaining=0, reset_in=120)     # 403 "API rate limit exceeded" with X-RateLimit-Reset
        gh.fail_next(502, 503)                       # the next requests get these statuses
        gh.requests                                  # every request (path with query string, headers)
        payload = gh.push_payload("aineko-dev/aineko", "develop")   # a push webhook body for the branch head

Endpoints, as GitHub serves them: `GET /repos/{owner}/{repo}`, `GET /repos/{owner}/{repo}/branches/{branch}`,
`GET /repos/{owner}/{repo}/contents/{path}?ref=` (a file: base64 content in 60-column lines; a folder: a list of
entries without content; files over `max_file_size`: `encoding: "none"` and empty content). Errors use GitHub's
JSON error body; every answer carries the X-RateLimit-* headers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.base import FakeServer, RecordedRequest

DOCS_URL = "https://docs.github.com/rest"
RATE_LIMIT_MESSAGE = (
    "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate "
    "limit. Check out the documentation for more details.)"
)


def blob_sha(text: str) -> str:
    """Git's object id for a file's bytes, as GitHub reports it."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    """One repository: commits (sha -> files) and branches (name -> sha)."""

    owner: str
    name: str
    id: int
    default_branch: str
    private: bool = False
    commits: dict[str, dict[str, str]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub(FakeServer):
    """GitHub's REST API, the parts PyGithub calls to read a repository's files at a branch."""

    provider = "github"

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: set[str] = set()
        self.max_file_size = 1_000_000
        self._ids = itertools.count(1000)
        self._failures: deque[int] = deque()
        self._rate_remaining: int | None = None
        self._rate_reset = 0
        self._state = threading.Lock()
        super().__init__()

    # -- the API tests use -------------------------------------------------------------------------------------
    def add_repo(
        self, full_name: str, files: dict[str, str], *, branch: str = "main", private: bool = False
    ) -> str:
        """A repository whose `branch` (also its default branch) holds `files`; returns the commit SHA."""
        owner, name = full_name.split("/")
        with self._state:
            self.repos[full_name.lower()] = FakeRepo(owner, name, next(self._ids), branch, private)
        return self.push(full_name, files, branch=branch, replace=True)

    def push(self, full_name: str, files: dict[str, str], *, branch: str | None = None, replace: bool = False) -> str:
        """A new commit on `branch` changing `files` (or holding exactly `files` with replace=True); its SHA."""
        with self._state:
            repo = self.repos[full_name.lower()]
            branch = branch or repo.default_branch
            tree = {} if replace or branch not in repo.branches else dict(repo.commits[repo.branches[branch]])
            tree.update(files)
            sha = hashlib.sha1(f"{full_name}:{branch}:{next(self._ids)}:{sorted(tree.items())}".encode()).hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def rate_limit(self, remaining: int | None, reset_in: float = 3600) -> int:
        """Requests left before 403 (None: unlimited) and when the window resets; returns the reset epoch."""
        with self._state:
            self._rate_remaining = remaining
            self._rate_reset = int(time.time() + reset_in)
            return self._rate_reset

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses (e.g. 502), whatever they ask for."""
        with self._state:
            self._failures.extend(statuses)

    def reset(self) -> None:
        """No repos, tokens, limits, scripted failures or recorded requests."""
        super().reset()
        with self._state:
            self.repos.clear()
            self.tokens = set()
            self.max_file_size = 1_000_000
            self._failures.clear()
            self._rate_remaining = None

    def push_payload(self, full_name: str, branch: str, **overrides: Any) -> dict[str, Any]:
        """The body of a `push` webhook for the head of `branch`, as GitHub sends it (the fields that matter)."""
        repo = self.repos[full_name.lower()]
        after = repo.branches.get(branch, "0" * 40)
        payload = {
            "ref": f"refs/heads/{branch}",
            "before": "0" * 40,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": False,
            "base_ref": None,
            "compare": f"https://github.com/{repo.full_name}/compare/{after[:12]}",
            "commits": [{"id": after, "message": "update docs", "distinct": True}],
            "head_commit": {"id": after, "message": "update docs"},
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "full_name": repo.full_name,
                "private": repo.private,
                "owner": {"login": repo.owner, "name": repo.owner},
                "default_branch": repo.default_branch,
                "master_branch": repo.default_branch,
            },
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            "sender": {"login": "octocat", "id": 1},
        }
        payload.update(overrides)
        return payload

    # -- the server ----------------------------------------------------------------------------------------------
    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/repos/{owner}/{name}", self._repo, methods=["GET"])
        app.add_api_route("/repos/{owner}/{name}/branches/{branch:path}", self._branch, methods=["GET"])
        app.add_api_route("/repos/{owner}/{name}/contents/{path:path}", self._contents, methods=["GET"])

    def error_body(self, reply: Any) -> dict[str, Any]:
        return {"message": reply.message, "documentation_url": DOCS_URL, "status": str(reply.status)}

    def _answer(self, status: int, body: Any, limit: int, remaining: int) -> Response:
        headers = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(self._rate_reset or int(time.time() + 3600)),
            "X-RateLimit-Used": str(max(limit - remaining, 0)),
            "X-RateLimit-Resource": "core",
        }
        return JSONResponse(body, status_code=status, headers=headers)

    def _error(self, status: int, message: str, limit: int, remaining: int) -> Response:
        return self._answer(status, {"message": message, "documentation_url": DOCS_URL, "status": str(status)}, limit, remaining)

    def _gate(self, request: Request) -> tuple[Response | None, bool, int, int]:
        """Record the request; answer scripted failures, bad tokens and an exhausted rate limit as GitHub does."""
        auth = request.headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else None
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        with self._state:
            self.requests.append(
                RecordedRequest(path, {k.lower(): v for k, v in request.headers.items()}, {}, time.monotonic())
            )
            failure = self._failures.popleft() if self._failures else None
            authed = token is not None and token in self.tokens
            limit = 5000 if authed else 60
            if failure is not None:
                return self._error(failure, f"fake GitHub error {failure}", limit, limit), authed, limit, limit
            if token is not None and not authed:
                return self._error(401, "Bad credentials", limit, limit), authed, limit, limit
            if self._rate_remaining is None:
                return None, authed, limit, limit - 1
            if time.time() >= self._rate_reset:
                self._rate_remaining = limit
            if self._rate_remaining <= 0:
                return self._error(403, RATE_LIMIT_MESSAGE, limit, 0), authed, limit, 0
            self._rate_remaining -= 1
            return None, authed, limit, self._rate_remaining

    def _find(self, owner: str, name: str, authed: bool) -> FakeRepo | None:
        repo = self.repos.get(f"{owner}/{name}".lower())
        return None if repo is None or (repo.private and not authed) else repo

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": {"login": repo.owner, "id": repo.id + 1, "type": "Organization", "url": f"{self.url}/users/{repo.owner}"},
            "html_url": f"https://github.com/{repo.full_name}",
            "description": "fake repository",
            "fork": False,
            "url": api,
            "contents_url": f"{api}/contents/{{+path}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
        }

    async def _repo(self, owner: str, name: str, request: Request) -> Response:
        early, authed, limit, remaining = self._gate(request)
        if early is not None:
            return early
        repo = self._find(owner, name, authed)
        if repo is None:
            return self._error(404, "Not Found", limit, remaining)
        return self._answer(200, self._repo_json(repo), limit, remaining)

    async def _branch(self, owner: str, name: str, branch: str, request: Request) -> Response:
        early, authed, limit, remaining = self._gate(request)
        if early is not None:
            return early
        repo = self._find(owner, name, authed)
        if repo is None:
            return self._error(404, "Not Found", limit, remaining)
        if branch not in repo.branches:
            return self._error(404, "Branch not found", limit, remaining)
        sha = repo.branches[branch]
        api = f"{self.url}/repos/{repo.full_name}"
        body = {
            "name": branch,
            "commit": {
                "sha": sha,
                "node_id": f"C_{sha[:10]}",
                "commit": {"message": "update docs", "tree": {"sha": sha[::-1], "url": f"{api}/git/trees/{sha[::-1]}"}},
                "url": f"{api}/commits/{sha}",
                "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            },
            "_links": {"self": f"{api}/branches/{branch}", "html": f"https://github.com/{repo.full_name}/tree/{branch}"},
            "protected": False,
            "protection_url": f"{api}/branches/{branch}/protection",
        }
        return self._answer(200, body, limit, remaining)

    def _entry(self, repo: FakeRepo, path: str, ref: str, kind: str, text: str | None) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        sha = blob_sha(text) if text is not None else hashlib.sha1(path.encode()).hexdigest()
        url = f"{api}/contents/{path}?ref={ref}"
        git_url = f"{api}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
        html_url = f"https://github.com/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{ref}/{path}"
        return {
            "type": kind,
            "size": len(text.encode("utf-8")) if text is not None else 0,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}" if kind == "file" else None,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }

    def _file_json(self, repo: FakeRepo, path: str, ref: str, text: str) -> dict[str, Any]:
        body = self._entry(repo, path, ref, "file", text)
        data = text.encode("utf-8")
        if len(data) > self.max_file_size:
            return {**body, "encoding": "none", "content": ""}
        encoded = base64.b64encode(data).decode("ascii")
        return {**body, "encoding": "base64", "content": "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))}

    async def _contents(self, owner: str, name: str, path: str, request: Request) -> Response:
        early, authed, limit, remaining = self._gate(request)
        if early is not None:
            return early
        repo = self._find(owner, name, authed)
        if repo is None:
            return self._error(404, "Not Found", limit, remaining)
        ref = request.query_params.get("ref") or repo.default_branch
        sha = repo.branches.get(ref, ref if ref in repo.commits else None)
        if sha is None:
            return self._error(404, f"No commit found for the ref {ref}", limit, remaining)
        tree, path = repo.commits[sha], path.strip("/")
        if path in tree:
            return self._answer(200, self._file_json(repo, path, ref, tree[path]), limit, remaining)
        prefix = f"{path}/" if path else ""
        children: dict[str, str] = {}
        for file_path in tree:
            if file_path.startswith(prefix):
                head, sep, _ = file_path[len(prefix) :].partition("/")
                children[prefix + head] = "dir" if sep else "file"
        if not children:
            return self._error(404, "Not Found", limit, remaining)
        listing = [self._entry(repo, p, ref, kind, tree.get(p)) for p, kind in sorted(children.items())]
        return self._answer(200, listing, limit, remaining)
