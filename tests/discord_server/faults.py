"""Faults on demand: Discord's real error answers (50007, 403, 404, 429 with Via, 5xx) for chosen requests."""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable
from typing import Any

from tests.discord_server.recorder import RecordedRequest

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Fault:
    """An error response. ``name`` is what the request log shows."""

    name: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def cannot_dm() -> Fault:
    return Fault("cannot_dm", 403, {"message": "Cannot send messages to this user", "code": 50007})


def missing_permissions() -> Fault:
    return Fault("missing_permissions", 403, {"message": "Missing Permissions", "code": 50013})


def missing_access() -> Fault:
    return Fault("missing_access", 403, {"message": "Missing Access", "code": 50001})


def unknown_message() -> Fault:
    return Fault("unknown_message", 404, {"message": "Unknown Message", "code": 10008})


def unknown_channel() -> Fault:
    return Fault("unknown_channel", 404, {"message": "Unknown Channel", "code": 10003})


def rate_limited(retry_after: float = 0.05, *, is_global: bool = False) -> Fault:
    # discord.py retries a 429 only when a Via header is present; without it, it assumes a Cloudflare ban.
    return Fault(
        "rate_limited",
        429,
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global},
        {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
            "X-RateLimit-Global": "true" if is_global else "false",
        },
    )


def server_error(status: int = 500) -> Fault:
    """discord.py retries 500/502/504 (after 1s, 3s, ...) and raises DiscordServerError for other 5xx."""
    return Fault(f"server_error_{status}", status, {"message": "500: Internal Server Error", "code": 0})


@dataclasses.dataclass
class _Rule:
    fault: Fault
    method: str | None
    route: str | None
    path: str | None
    when: Callable[[RecordedRequest], bool] | None
    times: int | None  # None: every matching request until cleared

    def matches(self, request: RecordedRequest) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        if self.route is not None and request.route != self.route:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(request.path, self.path):
            return False
        return self.when is None or self.when(request)


class FaultPlan:
    """Rules checked in order for each REST request; the first match answers with its fault."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self.blocked_dm_recipients: set[int] = set()

    def next_request(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        route: str | None = None,
        path: str | None = None,
        when: Callable[[RecordedRequest], bool] | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``fault`` (``times=None``: all of them).

        Match on ``method``, ``route`` (template such as ``/channels/{channel_id}/messages``), ``path``
        (glob over the real path such as ``/channels/123/messages``) and ``when(request)``.
        """
        self._rules.append(_Rule(fault, method, route, path, when, times))

    def block_dms(self, user_id: int) -> None:
        """The member closed their DMs: every message to their DM channel gets 50007, as on Discord."""
        self.blocked_dm_recipients.add(user_id)

    def unblock_dms(self, user_id: int) -> None:
        self.blocked_dm_recipients.discard(user_id)

    def clear(self) -> None:
        self._rules.clear()
        self.blocked_dm_recipients.clear()

    @property
    def pending(self) -> int:
        return len(self._rules)

    def take(self, request: RecordedRequest) -> Fault | None:
        for rule in self._rules:
            if rule.matches(request):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                return rule.fault
        return None
