"""The gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME with replay, INVALID_SESSION, drops.

Shards as on Discord: IDENTIFY may carry ``shard: [shard_id, shard_count]``; that session's READY lists only
the guilds it owns (``(guild_id >> 22) % shard_count == shard_id``) and it receives only their events. Events
outside any guild (DMs, DM interactions) go to shard 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.discord_server.snowflakes import shard_of

if TYPE_CHECKING:
    from tests.discord_server.server import DiscordServer

log = logging.getLogger(__name__)


class Op:
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE = 3
    RESUME = 6
    RECONNECT = 7
    REQUEST_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


# A gateway close code discord.py treats as "reconnect and RESUME" (4000: unknown error).
RESUMABLE_CLOSE = 4000
AUTHENTICATION_FAILED = 4004
INVALID_SHARD = 4010


@dataclasses.dataclass(eq=False)
class GatewaySession:
    """One identified session. Every dispatch is buffered with its sequence number so RESUME can replay it."""

    id: str
    token: str
    intents: int
    identify: dict[str, Any]
    seq: int = 0
    buffer: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    ended: bool = False
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    shard: tuple[int, int] = (0, 1)  # (shard_id, shard_count) from IDENTIFY; (0, 1) when none was sent

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session receives the events of ``guild_id`` (None: not in a guild, e.g. a DM)."""
        shard_id, shard_count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, shard_count) == shard_id


@dataclasses.dataclass(frozen=True)
class Resume:
    session_id: str
    seq: int
    replayed: int


class Gateway:
    """Serves ``/gateway``; ``dispatch`` sends an event to every live session (buffered while disconnected)."""

    def __init__(self, server: DiscordServer, *, heartbeat_interval_ms: int = 41_250) -> None:
        self.server = server
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[Resume] = []
        self.heartbeats = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://{self.server.host}:{self.server.port}/gateway"

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if not s.ended]

    def sessions_for_guild(self, guild_id: int | None) -> list[GatewaySession]:
        """The live sessions that receive ``guild_id``'s events (its owning shard's)."""
        return [s for s in self.live_sessions() if s.owns(guild_id)]

    # -- serving ---------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, heartbeat=None)
        await ws.prepare(request)
        self.connections += 1
        session: GatewaySession | None = None
        await self._send(ws, {"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                op, data = message.get("op"), message.get("d")
                if op == Op.HEARTBEAT:
                    self.heartbeats += 1
                    await self._send(ws, {"op": Op.HEARTBEAT_ACK})
                elif op == Op.IDENTIFY:
                    session = await self._identify(ws, data)
                elif op == Op.RESUME:
                    session = await self._resume(ws, data)
                elif op == Op.REQUEST_MEMBERS and session is not None:
                    await self._send_member_chunk(session, data)
                elif op not in (Op.PRESENCE,):
                    log.warning("gateway op %s is not implemented by the loopback server", op)
        finally:
            if session is not None and session.ws is ws:
                session.ws = None
                # The client closing with 1000 ends its session (bot.close()); anything else may RESUME.
                if ws.close_code == 1000:
                    session.ended = True
            self.server.notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        self.identifies.append(data)
        token = str(data.get("token", ""))
        if not self.server.is_valid_token(token):
            await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        shard = _shard_of_identify(data)
        if shard is None:
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return None
        session = GatewaySession(secrets.token_hex(16), token, int(data.get("intents", 0)), data, shard=shard)
        self.sessions[session.id] = session
        world = self.server.world
        bot_user = world.cast.bot
        guilds = [g for g in world.guilds.values() if not g.bot_removed and session.owns(g.id)]
        async with session.lock:
            session.ws = ws
            await self._dispatch_locked(
                session,
                "READY",
                {
                    "v": 10,
                    "user": {**bot_user.payload(), "verified": True, "mfa_enabled": False, "email": None},
                    "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                    "session_id": session.id,
                    "session_type": "normal",
                    "resume_gateway_url": self.url,
                    "shard": list(shard),
                    "application": {"id": str(self.server.application_id), "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                    "presences": [],
                    "geo_ordered_rtc_regions": [],
                    "guild_join_requests": [],
                    "user_settings": {},
                },
            )
            for guild in guilds:
                if session.intents & Intent.GUILDS:
                    await self._dispatch_locked(session, "GUILD_CREATE", guild.payload())
        self.server.notify()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.ended or session.token != data.get("token"):
            await self._send(ws, {"op": Op.INVALID_SESSION, "d": False})
            return None
        seq = int(data.get("seq") or 0)
        async with session.lock:
            session.ws = ws
            missed = [frame for number, frame in session.buffer if number > seq]
            for frame in missed:
                await ws.send_str(frame)
            await self._dispatch_locked(session, "RESUMED", {})
        self.resumes.append(Resume(session.id, seq, len(missed)))
        log.info("gateway session resumed from seq %s, replayed %d events", seq, len(missed))
        self.server.notify()
        return session

    async def _send_member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.server.world.guilds.get(int(data["guild_id"]))
        members = list(guild.members.values()) if guild else []
        chunk = {
            "guild_id": data["guild_id"],
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        async with session.lock:
            await self._dispatch_locked(session, "GUILD_MEMBERS_CHUNK", chunk)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(payload))

    # -- dispatching -----------------------------------------------------------------------------------

    async def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        *,
        intent: int = 0,
        guild_id: int | None = None,
        shape: Callable[[GatewaySession, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> int:
        """Send ``event`` to every live session of ``guild_id``'s shard holding ``intent`` (None: shard 0).

        Returns how many sessions got (or will replay) it.
        """
        count = 0
        for session in self.sessions_for_guild(guild_id):
            if intent and not session.intents & intent:
                continue
            async with session.lock:
                await self._dispatch_locked(session, event, shape(session, data) if shape else data)
            count += 1
        return count

    async def _dispatch_locked(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = json.dumps({"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data})
        session.buffer.append((session.seq, frame))
        ws = session.ws
        if ws is None or ws.closed:
            return  # kept in the buffer; a RESUME replays it
        try:
            await ws.send_str(frame)
        except (ConnectionResetError, RuntimeError):
            session.ws = None

    # -- faults ----------------------------------------------------------------------------------------

    async def drop_connection(self, code: int = RESUMABLE_CLOSE) -> None:
        """Close every live socket mid-session. Events dispatched from now on wait in the buffer for RESUME."""
        for session in self.live_sessions():
            async with session.lock:
                ws, session.ws = session.ws, None
            if ws is not None and not ws.closed:
                await ws.close(code=code, message=b"loopback: connection dropped")

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION; non-resumable ends the session, so the client must IDENTIFY afresh."""
        for session in self.live_sessions():
            if not resumable:
                session.ended = True
            ws = session.ws
            if ws is not None and not ws.closed:
                await self._send(ws, {"op": Op.INVALID_SESSION, "d": resumable})

    async def end_sessions_for_token(self, token: str) -> None:
        """Forget every session of ``token`` and close its sockets with 4004 (as for a revoked token)."""
        for session in list(self.sessions.values()):
            if session.token != token:
                continue
            session.ended = True
            ws, session.ws = session.ws, None
            if ws is not None and not ws.closed:
                await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")


def _shard_of_identify(data: dict[str, Any]) -> tuple[int, int] | None:
    """IDENTIFY's ``shard`` as (id, count); (0, 1) when absent; None when malformed (Discord closes with 4010)."""
    shard = data.get("shard")
    if shard is None:
        return (0, 1)
    try:
        shard_id, shard_count = (int(value) for value in shard)
    except (TypeError, ValueError):
        return None
    if shard_count < 1 or not 0 <= shard_id < shard_count:
        return None
    return (shard_id, shard_count)
