"""Checks every end-to-end test's bot messages: none may ping anyone but the Moderator role (issue 8).

``bot_pings_no_one_but_moderators`` is an autouse fixture (imported by ``tests/e2e/conftest.py``): at
teardown it goes through every request the bot made to the loopback servers the test started, and fails the
test if a message body (channel message, edit, interaction answer, follow-up) lacks ``allowed_mentions`` or
lets it ping @everyone/@here, a user, a replied-to author, or any role but the Moderator role of the guild it
is sent in (the cast's, or another guild's a test added).
Which channel may ping the role is the alert channel a test configured; the bad-input tests check that too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discord_server import DiscordServer, Guild
from tests.discord_server.recorder import RecordedRequest
from tests.discord_server.world import Role

PINGING_PARSE = {"everyone", "users", "roles"}
MESSAGE_ROUTES = ("/channels/{channel_id}/messages", "/channels/{channel_id}/messages/{message_id}")
WEBHOOK_PREFIX = "/webhooks/{application_id}/{token}"
INTERACTION_CALLBACK = "/interactions/{interaction_id}/{token}/callback"


def message_body(request: RecordedRequest) -> dict | None:
    """The message a request creates or edits (channel message, interaction answer, follow-up), if any."""
    body = request.json if isinstance(request.json, dict) else None
    if body is None or request.method not in ("POST", "PATCH"):
        return None
    if request.route in MESSAGE_ROUTES or request.route.startswith(WEBHOOK_PREFIX):
        return body
    if request.route == INTERACTION_CALLBACK and body.get("type") in (4, 7):
        return body.get("data") or {}
    return None


def mention_problems(
    requests: list[RecordedRequest], *, moderator_role_id: int, alert_channel_id: int | None = None
) -> list[str]:
    """Message bodies that could ping someone; ``alert_channel_id``: the only channel that may ping the role."""
    problems = []
    for request in requests:
        body = message_body(request)
        if body is None or not (body.get("content") or body.get("embeds")):
            continue
        where = f"{request.method} {request.path}"
        allowed = body.get("allowed_mentions")
        if allowed is None:
            problems.append(f"{where}: no allowed_mentions (Discord would ping every mention in it)")
            continue
        if PINGING_PARSE & set(allowed.get("parse") or []):
            problems.append(f"{where}: allowed_mentions.parse={allowed.get('parse')}")
        if allowed.get("users") or allowed.get("replied_user"):
            problems.append(f"{where}: pings users {allowed.get('users')} / replied_user")
        roles = [str(r) for r in allowed.get("roles") or []]
        in_alerts = alert_channel_id is None or request.params.get("channel_id") == str(alert_channel_id)
        if roles and (not in_alerts or roles != [str(moderator_role_id)]):
            problems.append(f"{where}: pings roles {roles}")
    return problems


@pytest.fixture(autouse=True)
def bot_pings_no_one_but_moderators(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DiscordServer]]:
    servers: list[DiscordServer] = []
    original_start = DiscordServer.start

    async def start(server: DiscordServer) -> DiscordServer:
        servers.append(server)
        return await original_start(server)

    monkeypatch.setattr(DiscordServer, "start", start)
    yield servers
    problems = [problem for server in servers for problem in _problems_by_guild(server)]
    if problems:
        pytest.fail(f"{len(problems)} bot message(s) could ping someone:\n" + "\n".join(problems[:5]))


def _problems_by_guild(server: DiscordServer) -> list[str]:
    """``mention_problems`` per guild: a message in a guild's channel may ping that guild's Moderator role only.

    Requests outside a guild channel (DMs, interaction answers) are held to the cast's Moderator role, as before.
    """
    world, cast = server.world, server.cast
    by_guild: dict[int, list[RecordedRequest]] = {}
    for request in server.requests.all:
        channel = world.channels.get(int(request.params.get("channel_id") or 0))
        guild_id = channel.guild_id if channel is not None and channel.guild_id in world.guilds else None
        by_guild.setdefault(guild_id or cast.guild.id, []).append(request)
    problems = []
    for guild_id, requests in by_guild.items():
        guild = world.guilds[guild_id]
        role = cast.moderator_role if guild_id == cast.guild.id else _moderator_role(guild)
        problems += mention_problems(requests, moderator_role_id=role.id if role is not None else 0)
    return problems


def _moderator_role(guild: Guild) -> Role | None:
    return next((role for role in guild.roles.values() if role.name == "Moderator"), None)
