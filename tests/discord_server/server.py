"""The loopback Discord server: REST + gateway on 127.0.0.1, and the actions of the people in the test guild."""

# Test helpers take a plain ``timeout=`` argument: tests read better than with asyncio.timeout blocks.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from tests.discord_server.faults import FaultPlan
from tests.discord_server.gateway import Gateway, GatewaySession, Intent
from tests.discord_server.interactions import (
    CommandError,
    Interaction,
    InteractionType,
    base_payload,
    build_command_data,
    build_component_data,
    build_modal_data,
    find_command,
)
from tests.discord_server.recorder import RecordedRequest, RequestLog
from tests.discord_server.rest import RestApi
from tests.discord_server.snowflakes import created_seconds, now_iso
from tests.discord_server.world import Attachment, Channel, Guild, Message, User, World

log = logging.getLogger(__name__)

T = TypeVar("T")
# Generous: the machine is shared with model training; a wait only costs this long when a test fails.
DEFAULT_WAIT_S = 10.0
# Discord's limits: the initial response within 3 s of the interaction's creation, follow-ups for 15 min.
INTERACTION_DEADLINE_S = 3.0
INTERACTION_TOKEN_LIFETIME_S = 15 * 60.0
AttachmentSpec = str | tuple[str, bytes] | tuple[str, bytes, str]
# A tiny valid PNG, used when a test attaches a file by name only.
_PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


class WaitTimeout(AssertionError):
    """What a test waited for never happened; the message lists the bot's recent requests."""


class DiscordServer:
    """Start with ``await server.start()``; point discord.py at ``api_base`` and ``gateway.url``."""

    def __init__(
        self, *, host: str = "127.0.0.1", heartbeat_interval_ms: int = 41_250, shard_count: int = 1
    ) -> None:
        self.host = host
        # What ``GET /gateway/bot`` recommends (discord.py's AutoShardedClient uses it when given no count).
        self.shard_count = shard_count
        self.port = 0
        self.world = World()
        self.cast = self.world.cast
        self.application_id = self.cast.bot.id  # Discord gives a bot's application the bot user's id
        self.requests = RequestLog()
        self.faults = FaultPlan()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.rest = RestApi(self)
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or a guild id -> synced commands
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        # As on Discord; a test may shorten them (``server.interaction_deadline_s = 0.5``).
        self.interaction_deadline_s = INTERACTION_DEADLINE_S
        self.interaction_token_lifetime_s = INTERACTION_TOKEN_LIFETIME_S
        self._tokens: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._dms_returned: dict[int, set[int]] = {}
        self._runner: web.AppRunner | None = None

    # -- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> DiscordServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/", self.gateway.handle)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/api/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.base_url = self.base_url
        log.info("loopback Discord listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        for session in self.gateway.sessions.values():
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.base_url}/api/v10"

    # -- tokens ----------------------------------------------------------------------------------------

    def new_token(self) -> str:
        """A bot token this server accepts (each bot instance may get its own, so one can be revoked)."""
        token = f"loopback.{secrets.token_urlsafe(24)}"
        self._tokens.add(token)
        return token

    def is_valid_token(self, token: str) -> bool:
        return token in self._tokens

    @staticmethod
    def interaction_age(interaction: Interaction) -> float:
        """Seconds since the interaction was created (its snowflake's time, as Discord counts)."""
        return time.time() - created_seconds(interaction.id)

    async def revoke_token(self, token: str) -> None:
        """Refuse ``token`` from now on: REST answers 401, its gateway sessions close with 4004."""
        self._tokens.discard(token)
        await self.gateway.end_sessions_for_token(token)

    # -- waiting ---------------------------------------------------------------------------------------

    def notify(self) -> None:
        """Something changed (a request, a session): wake every waiter to re-check its condition."""
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def wait_until(self, condition: Callable[[], T], timeout: float, what: str) -> T:
        """Return ``condition()`` once it is truthy; raise WaitTimeout naming ``what`` after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(repr(r) for r in self.requests.all[-8:]) or "none"
                raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last requests: {recent}")
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append(future)
            # Also re-check now and then: some conditions (bot state, the database) change without a request.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, min(remaining, 0.05))

    async def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the bot has made no request for ``quiet`` seconds (before asserting that nothing happens)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            last = self.requests.all[-1].at if self.requests.all else 0.0
            idle = time.monotonic() - last
            if idle >= quiet:
                return
            await asyncio.sleep(quiet - idle)
        raise WaitTimeout(f"the bot kept making requests for {timeout}s")

    async def wait_for_request(
        self,
        *,
        method: str | None = None,
        route: str | None = None,
        path: str | None = None,
        where: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = DEFAULT_WAIT_S,
    ) -> RecordedRequest:
        """The first recorded request (past or future) that matches and has been answered."""

        def found() -> RecordedRequest | None:
            return next(
                (
                    r
                    for r in self.requests.find(method=method, route=route, path=path)
                    if r.status and (where is None or where(r))
                ),
                None,
            )

        return await self.wait_until(found, timeout, f"a request {method or ''} {route or path or ''}")

    # -- what the bot sent -----------------------------------------------------------------------------

    def sent_to(self, channel: Channel | User) -> list[Message]:
        """Messages the bot has in ``channel`` (or in its DM with a user), oldest first; deleted ones left out."""
        if isinstance(channel, User):
            channel_id = self.world.dm_channels[channel.id].id if channel.id in self.world.dm_channels else -1
        else:
            channel_id = channel.id
        return [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel_id and m.author.id == self.cast.bot.id and not m.deleted
        ]

    def dms_to(self, user: User) -> list[Message]:
        return self.sent_to(user)

    async def wait_for_dm(
        self,
        user: User,
        predicate: Callable[[Message], bool] | None = None,
        *,
        timeout: float = DEFAULT_WAIT_S,
    ) -> Message:
        """The oldest DM to ``user`` that no earlier ``wait_for_dm`` returned (and matching ``predicate``)."""
        returned = self._dms_returned.setdefault(user.id, set())

        def found() -> Message | None:
            for message in self.dms_to(user):
                if message.id not in returned and (predicate is None or predicate(message)):
                    return message
            return None

        message = await self.wait_until(found, timeout, f"a DM to {user.name}")
        returned.add(message.id)
        return message

    async def wait_for_message_in(
        self,
        channel: Channel,
        predicate: Callable[[Message], bool] | None = None,
        *,
        timeout: float = DEFAULT_WAIT_S,
    ) -> Message:
        """The oldest message the bot has in ``channel`` matching ``predicate`` (already there, or to come)."""

        def found() -> Message | None:
            return next((m for m in self.sent_to(channel) if predicate is None or predicate(m)), None)

        return await self.wait_until(found, timeout, f"a bot message in #{channel.name or channel.id}")

    # -- people acting in Discord ----------------------------------------------------------------------

    async def say(
        self,
        channel: Channel,
        author: User,
        text: str = "",
        *,
        reply_to: Message | None = None,
        attachments: Sequence[AttachmentSpec] = (),
        embeds: list[dict[str, Any]] | None = None,
    ) -> Message:
        """``author`` posts ``text`` in ``channel`` (a reply when ``reply_to`` is given); MESSAGE_CREATE is sent."""
        if channel.guild_id is not None and author.id not in self.world.guilds[channel.guild_id].members:
            raise ValueError(f"{author.name} is not a member of the guild")
        files = [self._attachment(spec) for spec in attachments]
        message = self.world.create_message(
            channel,
            author,
            text,
            reference_id=reply_to.id if reply_to is not None else None,
            attachments=files,
            embeds=list(embeds or []),
        )
        await self.dispatch_message("MESSAGE_CREATE", message, channel)
        return message

    def _attachment(self, spec: AttachmentSpec) -> Attachment:
        if isinstance(spec, str):
            return self.world.add_attachment(spec, _PNG_1x1, "image/png", None)
        name, data, *rest = spec
        return self.world.add_attachment(name, data, rest[0] if rest else None, None)

    async def edit(self, message: Message, text: str) -> Message:
        """The author edits their message; MESSAGE_UPDATE carries the full new message."""
        message.history.append(message.content)
        message.content = text
        message.edited_timestamp = now_iso()
        await self.dispatch_message("MESSAGE_UPDATE", message, self.world.channels[message.channel_id])
        return message

    async def delete(self, message: Message) -> None:
        """The author (or a moderator) deletes a message; MESSAGE_DELETE is sent."""
        await self.remove_message(message)

    async def remove_message(self, message: Message) -> None:
        message.deleted = True
        channel = self.world.channels[message.channel_id]
        data = {"id": str(message.id), "channel_id": str(channel.id)}
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
        await self.gateway.dispatch(
            "MESSAGE_DELETE", data, intent=_message_intent(channel), guild_id=channel.guild_id
        )

    async def remove_member(self, user: User, guild: Guild | None = None) -> None:
        """``user`` leaves the guild (GUILD_MEMBER_REMOVE)."""
        guild = guild or self.cast.guild
        guild.members.pop(user.id, None)
        await self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild.id), "user": user.payload()},
            intent=Intent.GUILD_MEMBERS,
            guild_id=guild.id,
        )

    async def delete_guild(self, guild: Guild | None = None) -> None:
        """The bot is removed from the guild (GUILD_DELETE without ``unavailable``)."""
        guild = guild or self.cast.guild
        guild.bot_removed = True
        await self.gateway.dispatch(
            "GUILD_DELETE", {"id": str(guild.id)}, intent=Intent.GUILDS, guild_id=guild.id
        )

    async def add_guild(
        self, name: str, *, shard: tuple[int, int] | None = None, members: Iterable[User] = ()
    ) -> Guild:
        """The bot is added to a new guild (``World.add_guild``); GUILD_CREATE goes to its shard's sessions."""
        guild = self.world.add_guild(name, shard=shard, members=members)
        await self.gateway.dispatch("GUILD_CREATE", guild.payload(), intent=Intent.GUILDS, guild_id=guild.id)
        return guild

    async def start_thread(self, starter: Message, name: str) -> Channel:
        """A member starts a public thread from ``starter`` (THREAD_CREATE; the thread's id is the message's)."""
        thread = self.world.add_thread(starter, name)
        await self.gateway.dispatch(
            "THREAD_CREATE",
            {**thread.payload(), "newly_created": True},
            intent=Intent.GUILDS,
            guild_id=thread.guild_id,
        )
        return thread

    async def slash(
        self,
        path: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: User,
        channel: Channel | None = None,
    ) -> Interaction:
        """``user`` runs ``/path`` (e.g. ``"peercare channel add"``) with ``options`` in ``channel``.

        The command and its options are checked against what the bot synced; values are typed and
        resolved from the synced definition (users, channels, roles, attachments as server objects).
        """
        channel = channel or self.cast.general
        words = path.strip().lstrip("/").split()
        available = self.commands.get(str(channel.guild_id), []) if channel.guild_id else []
        available = available + self.commands.get("global", [])
        command = find_command(available, words[0])
        data = build_command_data(self.world, command, words[1:], options or {}, channel.guild_id)
        return await self._interact(InteractionType.APPLICATION_COMMAND, user, channel, data)

    async def click(
        self, message: Message, custom_id: str, *, user: User, values: Iterable[str] | None = None
    ) -> Interaction:
        """``user`` clicks the component ``custom_id`` on ``message`` (``values`` for select menus)."""
        if message.deleted:
            raise CommandError(f"message {message.id} was deleted; nobody can click it")
        channel = self.world.channels[message.channel_id]
        data = build_component_data(message, custom_id, list(values) if values is not None else None)
        return await self._interact(InteractionType.MESSAGE_COMPONENT, user, channel, data, source=message)

    async def submit_modal(
        self, opened_by: Interaction, values: Mapping[str, str], *, user: User | None = None
    ) -> Interaction:
        """Fill in and submit the modal the bot opened in answer to ``opened_by``."""
        if opened_by.modal is None:
            raise CommandError(f"interaction {opened_by.id} was not answered with a modal")
        data = build_modal_data(opened_by.modal, values)
        return await self._interact(
            InteractionType.MODAL_SUBMIT,
            user or opened_by.user,
            opened_by.channel,
            data,
            source=opened_by.source_message,
        )

    async def _interact(
        self, kind: int, user: User, channel: Channel, data: dict[str, Any], source: Message | None = None
    ) -> Interaction:
        interaction_id, token, payload = base_payload(self.world, self, kind, user, channel, data)
        if source is not None:
            payload["message"] = self.world.message_payload(source)
        interaction = Interaction(
            interaction_id, token, kind, user, channel, payload, self, source_message=source
        )
        self.interactions[interaction_id] = interaction
        self.interactions_by_token[token] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=channel.guild_id)
        return interaction

    # -- gateway plumbing ------------------------------------------------------------------------------

    async def dispatch_message(self, event: str, message: Message, channel: Channel) -> None:
        payload = self.world.message_payload(message)
        bot_id = self.cast.bot.id

        def shape(session: GatewaySession, data: dict[str, Any]) -> dict[str, Any]:
            # Without MESSAGE_CONTENT, Discord blanks guild messages that neither mention nor come from the bot.
            if session.intents & Intent.MESSAGE_CONTENT or channel.is_dm or message.author.id == bot_id:
                return data
            if any(m["id"] == str(bot_id) for m in data["mentions"]):
                return data
            return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

        await self.gateway.dispatch(
            event, payload, intent=_message_intent(channel), guild_id=channel.guild_id, shape=shape
        )

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        attachment = self.world.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )


def _message_intent(channel: Channel) -> int:
    return Intent.DIRECT_MESSAGES if channel.is_dm else Intent.GUILD_MESSAGES
