"""Escalation actions: a moderator moves an alert one step, or a member answers "ask me first".

Each step is checked against the case's state (``escalation_policy.ALLOWED_FROM``) and refused with a sentence
the person who pressed the button can read (``UserFacingError``); who did it and when is recorded and audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Escalation, EscalationConsent, EscalationState
from bot.services import consent, guild_settings
from bot.services.errors import UserFacingError
from bot.services.escalation_cases import audit_case
from bot.services.escalation_policy import ALLOWED_FROM, ASKED_YES, STATE_AFTER, ModeratorAction


async def apply_moderator_action(
    session: AsyncSession, escalation_id: int, action: ModeratorAction, moderator_id: int, now: datetime
) -> Escalation:
    """Move an alert one step (who and when are recorded); a step that no longer fits is refused clearly."""
    row = await session.get(Escalation, escalation_id)
    if row is None:
        raise UserFacingError("This alert no longer exists (its data may have been deleted).")
    if row.state not in ALLOWED_FROM[action]:
        raise UserFacingError(_refusal(row, action))
    if action is ModeratorAction.ACKNOWLEDGE:
        row.acknowledged_by, row.acknowledged_at = moderator_id, now
    elif action is ModeratorAction.CLAIM:
        if row.acknowledged_at is None:
            row.acknowledged_by, row.acknowledged_at = moderator_id, now
        row.claimed_by, row.claimed_at = moderator_id, now
    else:
        if row.acknowledged_at is None:
            row.acknowledged_by, row.acknowledged_at = moderator_id, now
        row.resolved_by, row.resolved_at = moderator_id, now
    previous = row.state
    row.state = STATE_AFTER[action]
    audit_case(
        session,
        f"escalation.{action.value}",
        row,
        actor_id=moderator_id,
        previous_state=previous.value,
        state=row.state.value,
    )
    return row


def _refusal(row: Escalation, action: ModeratorAction) -> str:
    if row.state is EscalationState.CLAIMED and action is ModeratorAction.CLAIM:
        return f"<@{row.claimed_by}> has already claimed this alert."
    if row.state in (EscalationState.RESOLVED, EscalationState.FALSE_ALARM):
        verb = "resolved" if row.state is EscalationState.RESOLVED else "marked as a false alarm"
        return f"This alert was already {verb} by <@{row.resolved_by}>."
    if row.state is EscalationState.DECLINED:
        return "The member changed their mind about moderators being told, so this alert was withdrawn."
    if row.state is EscalationState.ACKNOWLEDGED and action is ModeratorAction.ACKNOWLEDGE:
        return f"<@{row.acknowledged_by}> has already acknowledged this alert."
    return f"This alert is {row.state.value.replace('_', ' ')}; it cannot be {action.value.replace('_', ' ')}d now."


async def record_member_answer(
    session: AsyncSession, escalation_id: int, member_id: int, wants_moderator: bool, now: datetime
) -> Escalation:
    """The member answered "ask me first". Yes → pending again, now as an alert; no → closed, text dropped."""
    row = await session.get(Escalation, escalation_id)
    if row is None or row.member_id != member_id:
        raise UserFacingError("This question has expired.")
    if row.state is not EscalationState.AWAITING_MEMBER:
        raise UserFacingError("You already answered this — thank you.")
    if wants_moderator:
        member = await consent.find(session, row.guild_id, member_id)
        settings = await guild_settings.get_or_create(session, row.guild_id)
        if consent.escalation_consent(settings, member) is EscalationConsent.NO:
            # Their standing choice says nobody is told; a button on an older question does not overrule it.
            raise UserFacingError(
                "Your PeerCare setting is that no moderator is told, so nobody has been. If you would like "
                "a moderator to reach out, choose **yes** or **ask** with `/peercare safety` in the server, "
                "then press this button again."
            )
        row.consent_used = ASKED_YES
        row.state = EscalationState.PENDING
        row.delivery_attempts = 0
    else:
        row.state = EscalationState.DECLINED
        row.excerpt = None
        row.text_expires_at = None
        row.resolved_at = now
    audit_case(
        session, "escalation.member_answered", row, actor_id=member_id, wants_moderator=wants_moderator
    )
    return row
