"""The few GitHub REST calls the comment hook makes (ECOSYSTEM.md: GitHub).

``GITHUB_API_URL`` (set in Actions; a local server in tests) and
``GITHUB_TOKEN``. Errors are raised with the call and GitHub's message, never
with the token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["MAX_COMMENT", "GitHub", "GitHubError"]

MAX_COMMENT = 65_536  # longer bodies get 422


class GitHubError(Exception):
    pass


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
            raise GitHubError(f"{method} {url}: HTTP {response.status_code} {message}")
        return response.json() if response.content else None

    def pull_request(self, number: int) -> PullRequest:
        data = self._call("GET", f"/pulls/{number}")
        return PullRequest(number, data["head"]["sha"], data["base"]["ref"])

    def approved(self, number: int) -> bool:
        """Whether the latest review of some reviewer approves the pull request."""
        latest: dict[str, str] = {}
        for review in self._pages(f"/pulls/{number}/reviews"):
            if review.get("state") in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                latest[review["user"]["login"]] = review["state"]
        return "APPROVED" in latest.values() and "CHANGES_REQUESTED" not in latest.values()

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
