"""Member consent: coaching DMs and escalation, resolved against the guild's defaults."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    CoachingChoice,
    CoachingDefault,
    EscalationConsent,
    GuildSettings,
    MemberConsent,
    utcnow,
)
from bot.services import audit


async def get_or_create(session: AsyncSession, guild_id: int, user_id: int) -> MemberConsent:
    consent = await session.get(MemberConsent, (guild_id, user_id))
    if consent is None:
        try:
            async with session.begin_nested():
                consent = MemberConsent(guild_id=guild_id, user_id=user_id, coaching=CoachingChoice.UNSET)
                session.add(consent)
        except IntegrityError:  # another event handler created it at the same moment
            consent = await session.get(MemberConsent, (guild_id, user_id))
            assert consent is not None
    return consent


async def find(session: AsyncSession, guild_id: int, user_id: int) -> MemberConsent | None:
    return await session.get(MemberConsent, (guild_id, user_id))


def wants_coaching(guild: GuildSettings, consent: MemberConsent | None) -> bool | None:
    """True/False when decided; None when the member has not chosen in an opt-in guild (invite first)."""
    choice = consent.coaching if consent is not None else CoachingChoice.UNSET
    if choice is CoachingChoice.ON:
        return True
    if choice is CoachingChoice.OFF:
        return False
    return True if guild.coaching_default is CoachingDefault.OPT_OUT else None


def escalation_consent(guild: GuildSettings, consent: MemberConsent | None) -> EscalationConsent:
    if consent is not None and consent.escalation is not None:
        return consent.escalation
    return guild.default_escalation_consent


def can_dm(consent: MemberConsent | None) -> bool:
    """False once Discord told us the member's DMs are closed (50007)."""
    return consent is None or consent.dms_closed_at is None


async def set_coaching(session: AsyncSession, guild_id: int, user_id: int, choice: CoachingChoice) -> None:
    consent = await get_or_create(session, guild_id, user_id)
    consent.coaching = choice
    consent.dms_closed_at = None  # the member just acted: try DMs again
    _record_choice(session, "consent.coaching", guild_id, user_id, choice)


async def set_escalation(
    session: AsyncSession, guild_id: int, user_id: int, choice: EscalationConsent
) -> None:
    consent = await get_or_create(session, guild_id, user_id)
    consent.escalation = choice
    _record_choice(session, "consent.escalation", guild_id, user_id, choice)


def _record_choice(
    session: AsyncSession,
    action: str,
    guild_id: int,
    user_id: int,
    choice: CoachingChoice | EscalationConsent,
) -> None:
    """A consent change is audited the same way whichever consent it is: the member acts on themself."""
    audit.record(
        session,
        action,
        guild_id=guild_id,
        actor_id=user_id,
        subject_type="member",
        subject_id=user_id,
        choice=choice.value,
    )


async def mark_dms_closed(session: AsyncSession, guild_id: int, user_id: int) -> None:
    consent = await get_or_create(session, guild_id, user_id)
    if consent.dms_closed_at is None:
        consent.dms_closed_at = utcnow()
        audit.record(
            session, "member.dms_closed", guild_id=guild_id, subject_type="member", subject_id=user_id
        )
