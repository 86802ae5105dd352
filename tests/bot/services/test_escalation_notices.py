"""Telling moderators that alerts are stuck: once per problem per window, and a plain summary for setup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.db.models import EscalationConsent
from bot.services import escalation_cases, escalation_delivery
from bot.services.escalation_delivery import MODERATOR_NOTICE_EVERY, DeliveryProblem
from bot.services.escalation_policy import EscalationKind
from inference.types import RiskTier

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GUILD, OTHER_GUILD = 10, 11


async def _claim(database, problem=DeliveryProblem.MISSING_PERMISSIONS, *, guild=GUILD, at=NOW) -> bool:
    async with database.session() as session:
        return await escalation_delivery.claim_moderator_notice(session, guild, problem, at)


async def test_a_problem_is_announced_once_per_window(database):
    assert await _claim(database) is True
    assert await _claim(database, at=NOW + timedelta(minutes=5)) is False
    assert await _claim(database, at=NOW + MODERATOR_NOTICE_EVERY - timedelta(seconds=1)) is False
    assert await _claim(database, at=NOW + MODERATOR_NOTICE_EVERY + timedelta(seconds=1)) is True


async def test_each_problem_and_each_guild_has_its_own_notice(database):
    assert await _claim(database, DeliveryProblem.MISSING_PERMISSIONS) is True
    assert await _claim(database, DeliveryProblem.ALERT_CHANNEL_GONE) is True
    assert await _claim(database, DeliveryProblem.MISSING_PERMISSIONS, guild=OTHER_GUILD) is True
    assert await _claim(database, DeliveryProblem.ALERT_CHANNEL_GONE) is False


async def _open_case(database, message_id: int) -> int:
    async with database.session() as session:
        row, _ = await escalation_cases.open_escalation(
            session,
            guild_id=GUILD,
            channel_id=20,
            message_id=message_id,
            member_id=30,
            kind=EscalationKind.POST,
            tier=RiskTier.HIGH,
            labels=["suicidal"],
            excerpt="a short made-up excerpt",
            consent_choice=EscalationConsent.YES,
            now=NOW,
            retention_days=7,
        )
        return row.id


async def test_setup_summary_counts_waiting_alerts_and_names_the_last_error_only(database):
    first, second = await _open_case(database, 100), await _open_case(database, 101)
    async with database.session() as session:
        assert (
            await escalation_delivery.delivery_problems(session, GUILD) == []
        )  # pending, but nothing failed yet
        await escalation_delivery.mark_failed(
            session, first, "missing permission to post in the alert channel (403)", NOW
        )
        await escalation_delivery.mark_failed(
            session, second, "the alert channel no longer exists (404)", NOW
        )
    async with database.session() as session:
        (line,) = await escalation_delivery.delivery_problems(session, GUILD)
        assert await escalation_delivery.delivery_problems(session, OTHER_GUILD) == []
    assert line.startswith(
        "2 moderator alerts are waiting to be delivered: the alert channel no longer exists"
    )
    assert "made-up" not in line
