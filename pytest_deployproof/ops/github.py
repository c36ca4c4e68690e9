"""The few GitHub REST calls the comment hook makes (ECOSYSTEM.md: GitHub).

``GITHUB_API_URL`` (set in Actions; a local server in tests) and
``GITHUB_TOKEN``. Errors are raised with the call and GitHub's message, never
with the token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["MAX_COMMENT", "GitHub", "GitHubError"]

MAX_COMMENT = 65_536  # longer bodies get 422


class GitHubError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status; 0 when GitHub was not reached


@dataclass(frozen=True)
class PullRequest:
    number: int
    head_sha: str
    base_ref: str


class GitHub:
    def __init__(self, repository: str, token: str | None = None, api: str | None = None):
        self.repository = repository
        self.client = httpx.Client(
            base_url=api or os.environ.get("GITHUB_API_URL", "https://api.github.com"),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
            timeout=30,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"/repos/{self.repository}{path}"
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise GitHubError(f"{method} {url}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            message = response.text[:200]
            raise GitHubError(
                f"{method} {url}: HTTP {response.status_code} {message}", response.status_code
            )
        return response.json() if response.content else None

    def pull_request(self, number: int) -> PullRequest:
        data = self._call("GET", f"/pulls/{number}")
        return PullRequest(number, data["head"]["sha"], data["base"]["ref"])

    def permission(self, login: str) -> str:
        """``login``'s permission on the repository: admin, maintain, write, triage, read or
        none (the role, not the author_association: an org MEMBER may hold no write)."""
        try:
            found = self._call("GET", f"/collaborators/{quote(login, safe='')}/permission")
        except GitHubError as exc:
            if exc.status == 404:
                return "none"
            raise
        return str(found.get("role_name") or found.get("permission") or "none")

    def approval_problem(
        self, number: int, head: str, commenter: str, allowed: frozenset[str]
    ) -> str | None:
        """Why the pull request is not approved for deploying ``head``; ``None`` when it is:
        the latest review of some reviewer other than the commenter, holding one of the
        ``allowed`` permissions, APPROVED that exact commit, and no reviewer's latest review
        requests changes. A stale approval (of an earlier head) does not count."""
        latest: dict[str, dict[str, Any]] = {}
        for review in self._pages(f"/pulls/{number}/reviews"):
            user = review.get("user") or {}  # a deleted account's review has no user
            if user.get("login") and review.get("state") in (
                "APPROVED", "CHANGES_REQUESTED", "DISMISSED"
            ):  # fmt: skip
                latest[str(user["login"])] = review
        # Anyone may review a public repository: only a reviewer who could approve can block.
        blocking = [login for login, r in latest.items() if r.get("state") == "CHANGES_REQUESTED"]
        if any(self.permission(login) in allowed for login in blocking):
            return "a reviewer with write access requests changes"
        approvals = [
            login for login, r in latest.items()
            if r.get("state") == "APPROVED" and r.get("commit_id") == head
        ]  # fmt: skip
        others = [login for login in approvals if login != commenter]
        for login in others:
            if self.permission(login) in allowed:
                return None
        if others:
            return f"no approval of {head[:7]} by a reviewer with write access"
        if approvals:
            return f"the only approval of {head[:7]} is the commenter's own"
        return f"no approval of {head[:7]} (an approval of an earlier commit does not count)"

    def comments(self, number: int) -> list[dict[str, Any]]:
        return list(self._pages(f"/issues/{number}/comments"))

    def _pages(self, path: str) -> Any:
        page = 1
        while True:
            batch = self._call("GET", path, params={"per_page": 100, "page": page})
            yield from batch
            if len(batch) < 100:
                return
            page += 1

    def create_comment(self, number: int, body: str) -> int:
        return int(self._call("POST", f"/issues/{number}/comments", json={"body": body})["id"])

    def update_comment(self, comment_id: int, body: str) -> None:
        self._call("PATCH", f"/issues/comments/{comment_id}", json={"body": body})

    def react(self, comment_id: int, content: str) -> None:
        self._call("POST", f"/issues/comments/{comment_id}/reactions", json={"content": content})


def truncate(body: str, link: str | None = None) -> str:
    """A comment body GitHub accepts: cut, with a pointer to the full report."""
    if len(body) <= MAX_COMMENT:
        return body
    note = f"\n\n… truncated; the full report: {link}\n" if link else "\n\n… truncated\n"
    return body[: MAX_COMMENT - len(note)] + note
