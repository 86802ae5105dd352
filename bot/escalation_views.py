"""What escalation cases look like on Discord: the moderator alert (embed, buttons) and the "ask me first" DM.

Buttons are ``DynamicItem``s whose custom id carries the case id, so they work after a restart; a press is
handed to the bot's case desk (the escalation cog), never looked up by cog name.
"""

from __future__ import annotations

import re

import discord

from bot.app import case_desk_for
from bot.buttons import RestartProofButton, TwoChoiceButton
from bot.db.models import EscalationState
from bot.services.escalation_delivery import ALERT_FOOTER_PREFIX, DeliveryPlan
from bot.services.escalation_policy import EscalationKind, ModeratorAction

# At most this many later messages are linked in an alert (the count says how many more there are).
LINKED_MESSAGES = 5
REDACTED_ALERT = "This alert's data was deleted ({why}). Nothing about the member is kept by PeerCare."

_ACTION_LABELS = {
    ModeratorAction.ACKNOWLEDGE: ("Acknowledge", discord.ButtonStyle.primary),
    ModeratorAction.CLAIM: ("Claim", discord.ButtonStyle.success),
    ModeratorAction.RESOLVE: ("Resolve", discord.ButtonStyle.secondary),
    ModeratorAction.FALSE_ALARM: ("False alarm", discord.ButtonStyle.danger),
}
_STATUS_TEXT = {
    EscalationState.ALERTED: "Waiting for a moderator",
    EscalationState.ACKNOWLEDGED: "Acknowledged by <@{acknowledged_by}>",
    EscalationState.CLAIMED: "Claimed by <@{claimed_by}> — they are reaching out",
    EscalationState.RESOLVED: "Resolved by <@{resolved_by}>",
    EscalationState.FALSE_ALARM: "Marked as a false alarm by <@{resolved_by}>",
}


def footer(escalation_id: int) -> str:
    return f"{ALERT_FOOTER_PREFIX}{escalation_id}"


def role_mentions(role_id: int | None) -> discord.AllowedMentions:
    """Only the moderator role may ever be pinged: never @everyone, users, or roles inside the excerpt."""
    roles: list[discord.abc.Snowflake] = [discord.Object(id=role_id)] if role_id else []
    return discord.AllowedMentions(everyone=False, users=False, roles=roles, replied_user=False)


def status_text(plan: DeliveryPlan) -> str:
    """The alert's status line for the case's state (a pending case is drawn as freshly alerted)."""
    template = _STATUS_TEXT.get(plan.state, _STATUS_TEXT[EscalationState.ALERTED])
    return template.format(
        acknowledged_by=plan.acknowledged_by, claimed_by=plan.claimed_by, resolved_by=plan.resolved_by
    )


class AlertButton(
    RestartProofButton,
    template=r"peercare:alert:(?P<action>acknowledge|claim|resolve|false_alarm):(?P<escalation_id>[0-9]+)",
):
    """A moderator alert button; the escalation id rides in the custom id, so it works after a restart."""

    def __init__(self, action: ModeratorAction, escalation_id: int, *, disabled: bool = False) -> None:
        label, style = _ACTION_LABELS[action]
        super().__init__(f"peercare:alert:{action.value}:{escalation_id}", label, style, disabled=disabled)
        self.action = action
        self.escalation_id = escalation_id

    @classmethod
    def from_match(cls, match: re.Match[str]) -> AlertButton:
        return cls(ModeratorAction(match["action"]), int(match["escalation_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        desk = await case_desk_for(interaction, ephemeral=True)
        if desk is not None:
            await desk.moderator_pressed(interaction, self.escalation_id, self.action)


class AskFirstAnswer(
    TwoChoiceButton,
    prefix="peercare:askfirst",
    yes=("yes", "Yes, please reach out", discord.ButtonStyle.success),
    no=("no", "No, not now", discord.ButtonStyle.secondary),
):
    """The member's yes/no to "would you like a moderator to reach out?"; the subject is the case."""

    async def callback(self, interaction: discord.Interaction) -> None:
        desk = await case_desk_for(interaction)
        if desk is not None:
            await desk.member_answered(interaction, self.subject_id, self.yes)


def alert_view(escalation_id: int, state: EscalationState = EscalationState.ALERTED) -> discord.ui.View:
    closed = state in (EscalationState.RESOLVED, EscalationState.FALSE_ALARM)
    view = discord.ui.View(timeout=None)
    for action in ModeratorAction:
        waiting = state in (EscalationState.ALERTED, EscalationState.PENDING)
        done = (action is ModeratorAction.ACKNOWLEDGE and not waiting) or (
            action is ModeratorAction.CLAIM and state is EscalationState.CLAIMED
        )
        view.add_item(AlertButton(action, escalation_id, disabled=closed or done))
    return view


def ask_first_view(escalation_id: int) -> discord.ui.View:
    return AskFirstAnswer.view(escalation_id)


def _source_line(plan: DeliveryPlan) -> str:
    if plan.kind is EscalationKind.CHECKIN:
        return "From a private check-in: the member said they are struggling."
    if plan.kind is EscalationKind.TALK_REQUEST:
        return "From a private check-in: the member asked to talk to someone."
    return f"[Jump to the message]({plan.jump_url})"


def _more_messages_line(plan: DeliveryPlan) -> str:
    links = [
        f"[message {number}]({plan.link(channel_id, message_id)})"
        for number, (channel_id, message_id) in enumerate(plan.more_messages[:LINKED_MESSAGES], start=2)
    ]
    left = len(plan.more_messages) - LINKED_MESSAGES
    return ", ".join(links) + (f" and {left} more" if left > 0 else "")


def alert_embed(plan: DeliveryPlan, status: str | None = None) -> discord.Embed:
    """The alert, live or redrawn (a joined message, a button press, a delivery after a crash): same look."""
    description = _source_line(plan)
    if plan.member_said_yes:
        description += "\nThe member was asked privately and **would like a moderator to reach out**."
    embed = discord.Embed(
        title=f"A member may need support — {plan.tier} risk",
        description=description,
        colour=discord.Colour.red(),
        timestamp=plan.created_at,
    )
    embed.add_field(name="Member", value=f"<@{plan.member_id}>", inline=True)
    embed.add_field(name="Tier", value=plan.tier, inline=True)
    embed.add_field(name="Main labels", value=", ".join(plan.labels) or "—", inline=True)
    if plan.more_messages:
        embed.add_field(
            name=f"Later messages ({len(plan.more_messages)})", value=_more_messages_line(plan), inline=False
        )
    if plan.excerpt:
        quoted = "\n".join(f"> {line}" for line in discord.utils.escape_markdown(plan.excerpt).splitlines())
        name = "Latest excerpt" if plan.more_messages else "Excerpt"
        embed.add_field(name=name, value=quoted[:1024], inline=False)
    embed.add_field(name="Status", value=status if status is not None else status_text(plan), inline=False)
    embed.set_footer(text=footer(plan.escalation_id))
    return embed
