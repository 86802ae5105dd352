"""Privacy service: a member sees everything stored about them, and erasure reaches every table."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Column, func, select

from bot.db.models import (
    AuditLogEntry,
    Base,
    Checkin,
    CheckinCadence,
    CheckinSchedule,
    CoachingDelivery,
    Escalation,
    EscalationConsent,
    EscalationState,
    GuildSettings,
    MemberConsent,
    RiskAssessment,
    ScoredReply,
    SupportChannel,
)
from bot.db.session import Database
from bot.services import audit, consent, privacy

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GUILD, OTHER_GUILD = 10, 11
MEMBER, OTHER = 30, 31


def _reply(reply_id: int, responder: int, seeker: int, guild: int = GUILD) -> ScoredReply:
    return ScoredReply(
        guild_id=guild,
        channel_id=20,
        reply_message_id=reply_id,
        parent_message_id=reply_id - 1,
        responder_id=responder,
        seeker_id=seeker,
        er_level=1,
        ip_level=0,
        ex_level=2,
        probabilities={"ER": [0.1, 0.8, 0.1]},
        parent_risk={"tier": "elevated"},
        parent_risk_tier="elevated",
        content_hash="x" * 64,
        reply_text="made-up reply",
        text_expires_at=NOW + timedelta(days=7),
        scored_at=NOW,
    )


async def seed_member(
    database: Database, user_id: int, guild_id: int = GUILD, message_base: int = 1000
) -> None:
    """One row in every table that can hold something about ``user_id``."""
    async with database.session() as session:
        if await session.get(GuildSettings, guild_id) is None:
            session.add(GuildSettings(guild_id=guild_id))
        session.add(SupportChannel(channel_id=message_base, guild_id=guild_id, added_by=user_id))
        await consent.set_escalation(session, guild_id, user_id, EscalationConsent.YES)
        session.add(
            _reply(
                message_base + 2,
                responder=user_id,
                seeker=OTHER if user_id != OTHER else MEMBER,
                guild=guild_id,
            )
        )
        session.add(
            RiskAssessment(
                guild_id=guild_id,
                message_id=message_base + 3,
                author_id=user_id,
                tier="high",
                probabilities={"suicidal": 0.9},
            )
        )
        session.add(
            Escalation(
                guild_id=guild_id,
                message_id=message_base + 3,
                member_id=user_id,
                tier="high",
                excerpt="made-up excerpt",
                state=EscalationState.ALERTED,
                alert_channel_id=555,
                alert_message_id=message_base + 4,
            )
        )
        session.add(CoachingDelivery(guild_id=guild_id, responder_id=user_id, kind="coaching", status="sent"))
        schedule = CheckinSchedule(
            guild_id=guild_id,
            user_id=user_id,
            cadence=CheckinCadence.DAILY,
            time_of_day="09:00",
            timezone="UTC",
        )
        session.add(schedule)
        await session.flush()
        session.add(
            Checkin(schedule_id=schedule.id, guild_id=guild_id, user_id=user_id, answer_text="made-up answer")
        )
        audit.record(
            session,
            "checkin.enabled",
            guild_id=guild_id,
            actor_id=user_id,
            subject_type="checkin_schedule",
            subject_id=schedule.id,
        )


async def _count(database: Database, model: type[Base], *where) -> int:  # type: ignore[no-untyped-def]
    async with database.session() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_privacy_report_lists_each_table_with_the_members_rows(database: Database) -> None:
    await seed_member(database, MEMBER)
    async with database.session() as session:
        found = await privacy.describe_member_data(session, MEMBER)
    assert {
        "member_consent",
        "scored_replies (replies you wrote)",
        "risk_assessments",
        "escalations",
        "coaching_deliveries",
        "checkin_schedules",
        "checkins",
        "audit_log",
    } <= set(found)
    assert found["scored_replies (replies you wrote)"][0]["reply_text"] == "made-up reply"
    assert found["escalations"][0]["state"] == "alerted"


async def test_privacy_report_never_shows_another_members_rows(database: Database) -> None:
    await seed_member(database, OTHER)
    async with database.session() as session:
        found = await privacy.describe_member_data(session, MEMBER)
    # Only what is about MEMBER: the risk of MEMBER's post stored on OTHER's reply, no reply text.
    assert set(found) == {"scored_replies (replies to your posts: your post's risk score)"}
    assert "reply_text" not in found["scored_replies (replies to your posts: your post's risk score)"][0]


async def test_forget_me_leaves_no_row_about_the_member(database: Database) -> None:
    await seed_member(database, MEMBER)
    await seed_member(database, OTHER, message_base=2000)
    async with database.session() as session:
        report = await privacy.delete_member_data(session, MEMBER, reason="forget_me")
    async with database.session() as session:
        assert await privacy.describe_member_data(session, MEMBER) == {}
    assert report.alerts_to_redact == [privacy.AlertToRedact(GUILD, 555, 1004)]
    assert len(report.checkin_schedule_ids) == 1
    assert await _count(database, SupportChannel, SupportChannel.added_by == MEMBER) == 0


async def test_forget_me_keeps_other_members_data(database: Database) -> None:
    await seed_member(database, MEMBER)
    await seed_member(database, OTHER, message_base=2000)
    async with database.session() as session:
        await privacy.delete_member_data(session, MEMBER, reason="forget_me")
    assert await _count(database, ScoredReply, ScoredReply.responder_id == OTHER) == 1
    assert await _count(database, Escalation, Escalation.member_id == OTHER) == 1
    assert await _count(database, Checkin, Checkin.user_id == OTHER) == 1
    assert await _count(database, MemberConsent, MemberConsent.user_id == OTHER) == 1


async def test_forget_me_leaves_a_content_free_audit_entry(database: Database) -> None:
    await seed_member(database, MEMBER)
    async with database.session() as session:
        await privacy.delete_member_data(session, MEMBER, reason="forget_me")
    async with database.session() as session:
        entry = await session.scalar(
            select(AuditLogEntry).where(AuditLogEntry.action == "privacy.member_data_deleted")
        )
    assert entry.actor_id is None and entry.subject_id is None
    assert str(MEMBER) not in str(entry.details)
    assert entry.details["rows"]["escalations"] == 1


async def test_moderator_forget_me_removes_their_name_from_others_cases(database: Database) -> None:
    await seed_member(database, OTHER)
    async with database.session() as session:
        row = await session.scalar(select(Escalation))
        row.claimed_by = MEMBER
    async with database.session() as session:
        await privacy.delete_member_data(session, MEMBER, reason="forget_me")
    async with database.session() as session:
        row = await session.scalar(select(Escalation))
    assert row.claimed_by is None and row.member_id == OTHER


async def test_member_leaving_one_guild_keeps_their_data_in_another(database: Database) -> None:
    await seed_member(database, MEMBER)
    await seed_member(database, MEMBER, guild_id=OTHER_GUILD, message_base=3000)
    async with database.session() as session:
        await privacy.delete_member_data(session, MEMBER, GUILD, reason="member_left")
    assert await _count(database, Escalation, Escalation.member_id == MEMBER) == 1
    assert await _count(database, Escalation, Escalation.guild_id == GUILD) == 0


async def test_guild_deletion_removes_every_row_of_that_guild(database: Database) -> None:
    await seed_member(database, MEMBER)
    await seed_member(database, OTHER, guild_id=OTHER_GUILD, message_base=2000)
    async with database.session() as session:
        await privacy.delete_guild_data(session, GUILD)
    for model in (
        GuildSettings,
        SupportChannel,
        MemberConsent,
        ScoredReply,
        RiskAssessment,
        Escalation,
        CoachingDelivery,
        CheckinSchedule,
        Checkin,
    ):
        assert await _count(database, model, model.guild_id == GUILD) == 0, model.__tablename__
        assert await _count(database, model, model.guild_id == OTHER_GUILD) >= 1, model.__tablename__
    assert await _count(database, AuditLogEntry, AuditLogEntry.guild_id == GUILD) == 1  # the deletion itself


async def _shadow_audit(database: Database, post_id: int, guild_id: int = GUILD) -> None:
    """What escalation records for a high-risk post in shadow mode: the post's id, its tier, the consent."""
    async with database.session() as session:
        audit.record(
            session,
            "escalation.shadow",
            guild_id=guild_id,
            subject_type="message",
            subject_id=post_id,
            tier="high",
            consent="yes",
        )


async def test_forget_me_deletes_shadow_audit_rows(database: Database) -> None:
    await seed_member(database, MEMBER)
    await seed_member(database, OTHER, message_base=2000)
    await _shadow_audit(database, 1003)  # MEMBER's post
    await _shadow_audit(database, 2003)  # OTHER's post
    async with database.session() as session:
        await privacy.delete_member_data(session, MEMBER, reason="forget_me")
    about_message = (AuditLogEntry.action == "escalation.shadow") & (AuditLogEntry.subject_type == "message")
    assert await _count(database, AuditLogEntry, about_message & (AuditLogEntry.subject_id == 1003)) == 0
    assert await _count(database, AuditLogEntry, about_message & (AuditLogEntry.subject_id == 2003)) == 1


async def test_privacy_report_lists_shadow_audit_rows(database: Database) -> None:
    await seed_member(database, MEMBER)
    await _shadow_audit(database, 1003)
    async with database.session() as session:
        found = await privacy.describe_member_data(session, MEMBER)
    shadow = [row for row in found["audit_log"] if row["action"] == "escalation.shadow"]
    assert shadow and shadow[0]["subject_id"] == 1003 and shadow[0]["details"]["tier"] == "high"


async def test_privacy_report_shows_cases_a_moderator_handled(database: Database) -> None:
    await seed_member(database, OTHER)
    async with database.session() as session:
        row = await session.scalar(select(Escalation))
        row.claimed_by = MEMBER
    async with database.session() as session:
        found = await privacy.describe_member_data(session, MEMBER)
    (section,) = [rows for name, rows in found.items() if name.startswith("escalations (")]
    assert section == [{"id": row.id, "guild_id": GUILD, "claimed_by": MEMBER}]  # nothing of OTHER's case


PERSON_COLUMNS = {"user_id", "member_id", "author_id", "responder_id", "seeker_id", "actor_id"}
CODE = Path(__file__).resolve().parents[3]


def _names_a_person(column: Column) -> bool:  # type: ignore[type-arg]
    return column.key in PERSON_COLUMNS or column.key.endswith("_by")


def _audit_subjects_in_code() -> set[str]:
    """Every ``subject_type="..."`` the bot passes to the audit log (bot/ and cogs/)."""
    found: set[str] = set()
    for path in [*(CODE / "bot").rglob("*.py"), *(CODE / "cogs").rglob("*.py")]:
        if path.name == "audit.py":
            continue  # it passes the caller's subject_type on
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for keyword in getattr(node, "keywords", []):
                if keyword.arg == "subject_type":
                    assert isinstance(keyword.value, ast.Constant), f"{path}: subject_type must be a literal"
                    if keyword.value.value is not None:
                        found.add(keyword.value.value)
    return found


def test_forget_me_covers_every_table_and_audit_subject() -> None:
    for mapper in Base.registry.mappers:
        model, table = mapper.class_, mapper.local_table
        assert "guild_id" in table.c, f"{table.name}: a guild's data deletion finds rows by guild_id"
        if model in privacy.NOT_MEMBER_DATA:
            assert not [c.key for c in table.columns if _names_a_person(c)], table.name
            continue
        assert model in privacy.MEMBER_DATA, (
            f"{table.name}: say what forget-me and the privacy report do with it"
        )
        rule = privacy.MEMBER_DATA[model]
        declared = {rule.owner} | {m.column for m in rule.mentions}
        named = {c.key for c in table.columns if _names_a_person(c)}
        assert named <= declared, (
            f"{table.name}: {sorted(named - declared)} name a member but are not covered"
        )
        for name in [*declared - {None}, *rule.messages, *(a for m in rule.mentions for a in m.about)]:
            assert name in table.c, f"{table.name}.{name} does not exist"
    covered = privacy.personal_audit_subjects() | set(privacy.IMPERSONAL_AUDIT_SUBJECTS)
    used = _audit_subjects_in_code()
    assert {"member", "message", "escalation"} <= used
    assert used <= covered, f"audit subjects forget-me does not know: {sorted(used - covered)}"
