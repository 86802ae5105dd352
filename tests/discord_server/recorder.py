"""Every REST request the bot made, kept in order, so tests can assert exactly what was sent."""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclasses.dataclass
class RecordedRequest:
    """One request: ``route`` is the template (``/channels/{channel_id}/messages``), ``path`` the real path."""

    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    headers: dict[str, str]
    at: float = dataclasses.field(default_factory=time.monotonic)
    status: int = 0
    response: Any = None
    fault: str | None = None  # the injected fault that answered it, if any

    def matches(
        self, *, method: str | None = None, route: str | None = None, path: str | None = None
    ) -> bool:
        if method is not None and self.method != method.upper():
            return False
        if route is not None and self.route != route:
            return False
        return path is None or fnmatch.fnmatchcase(self.path, path)

    def __repr__(self) -> str:
        extra = f" fault={self.fault}" if self.fault else ""
        return f"<{self.method} {self.path} -> {self.status}{extra}>"


class RequestLog:
    def __init__(self) -> None:
        self.all: list[RecordedRequest] = []

    def add(self, request: RecordedRequest) -> None:
        self.all.append(request)

    def find(
        self, *, method: str | None = None, route: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        """Requests in order. ``path`` is a glob over the real path, e.g. ``/channels/*/messages``."""
        return [r for r in self.all if r.matches(method=method, route=route, path=path)]

    def unhandled(self) -> list[RecordedRequest]:
        """Requests to routes this server does not implement (answered 404): a gap to fill, or a bot bug."""
        return [r for r in self.all if r.route == "<unhandled>"]
