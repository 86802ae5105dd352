"""Helpers for the responder feature e2e tests: set a guild up as a moderator would, read what the bot stored."""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select

from bot.db.models import CoachingDelivery, RiskAssessment, ScoredReply
from bot.services.seeker_risk import JudgedRisk, SeekerPost
from tests.discord_server import WaitTimeout

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 15.0, what: str = "a condition"
) -> T:
    """Poll an async check (e.g. a database read) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def add_support_channel(e2e, channel=None) -> None:
    command = await e2e.slash(
        "peercare channel add", {"channel": channel or e2e.cast.support}, user=e2e.cast.moderator
    )
    await command.reply()


async def configure(e2e, **options: Any) -> str:
    """`/peercare setup` as the moderator; returns the (ephemeral) answer text."""
    command = await e2e.slash("peercare setup", options, user=e2e.cast.moderator)
    answer = await command.reply(timeout=15.0)
    return answer.text


async def go_live(e2e, **options: Any) -> None:
    """A support channel and shadow mode off: PeerCare may DM responders."""
    await add_support_channel(e2e)
    await configure(e2e, shadow_mode=False, **options)


async def coaching_on(e2e, user) -> None:
    command = await e2e.slash("peercare coaching on", user=user, channel=e2e.cast.support)
    await command.reply()


async def stored_reply(e2e, message_id: int) -> ScoredReply | None:
    async with e2e.database.session() as session:
        return await session.scalar(select(ScoredReply).where(ScoredReply.reply_message_id == message_id))


async def wait_for_stored_reply(e2e, message_id: int, *, where: Callable[[ScoredReply], bool] | None = None):
    async def check() -> ScoredReply | None:
        row = await stored_reply(e2e, message_id)
        return row if row is not None and (where is None or where(row)) else None

    return await eventually(check, what=f"reply {message_id} to be stored")


async def count_rows(e2e, model: type, *conditions: Any) -> int:
    async with e2e.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


async def count_deliveries(e2e, kind: str | None = None) -> int:
    conditions = [CoachingDelivery.kind == kind] if kind else []
    return await count_rows(e2e, CoachingDelivery, *conditions)


async def risk_row(e2e, message_id: int) -> RiskAssessment | None:
    async with e2e.database.session() as session:
        return await session.scalar(select(RiskAssessment).where(RiskAssessment.message_id == message_id))


@dataclass(frozen=True)
class Judgement:
    """One message's risk judgement as the bot made it: whose message, its risk, its tier and its case."""

    message_id: int
    author_id: int
    channel_id: int
    risk: Any
    tier: Any
    escalation_id: int | None


class SeekerEvents:
    """Records every risk judgement the bot makes (the step that stores a message's tier and opens its case)."""

    def __init__(self, bot) -> None:
        self.events: list[Judgement] = []
        seeker_risk = bot.get_cog("Replies").pipeline.seeker_risk
        original = seeker_risk._open_or_join_case

        async def recording(session: Any, post: SeekerPost, risk: Any, now: Any) -> JudgedRisk:
            judged = await original(session, post, risk, now)
            self.events.append(
                Judgement(
                    post.message_id, post.author_id, post.channel_id, risk, judged.tier, judged.escalation_id
                )
            )
            return judged

        seeker_risk._open_or_join_case = recording

    def for_message(self, message_id: int) -> list[Judgement]:
        return [e for e in self.events if e.message_id == message_id]


def settings_for(inference_config) -> dict[str, Any]:
    """Bot settings that name the same risk model the test's inference client runs (for its thresholds)."""
    return {"risk_model": inference_config.risk_source}


class Hold:
    """Make ``owner.<name>`` (an async callable) wait at its start until ``release``; then it runs as usual."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

        async def held(*args: object, **kwargs: object) -> object:
            self.reached.set()
            await self._released.wait()
            return await self.original(*args, **kwargs)

        setattr(owner, name, held)

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), 15)

    def release(self) -> None:
        setattr(self.owner, self.name, self.original)
        self._released.set()


class Freeze:
    """Make ``owner.<name>`` hang forever, as if the process froze right there; ``thaw`` restores it.

    Unlike ``Hold``, the frozen call never goes on: a test then kills the bot (``restart_bot(crash=True)``)
    to see what a crash at exactly that step leaves behind. (Not ``monkeypatch.undo()``: that would also
    undo the fixture's redirection of discord.py to the loopback server.)
    """

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.reached = asyncio.Event()

        async def frozen(*args: object, **kwargs: object) -> object:
            self.reached.set()
            await asyncio.Event().wait()

        setattr(owner, name, frozen)

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), 15)

    def thaw(self) -> None:
        setattr(self.owner, self.name, self.original)
