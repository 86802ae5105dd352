"""The words PeerCare says to a member who may be at risk: warm, hopeful, specific, never about methods.

Follows common safe-messaging guidance: say that help exists and that reaching out is a good step, give
specific resources, no judgement, no diagnosis, no detail about the post's content.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _opening(guild_name: str | None) -> str:
    """Both safety DMs open alike, so the member knows who writes and from which server (never about what)."""
    where = f" in **{guild_name}**" if guild_name else ""
    return f"Hi — this is PeerCare, the support bot{where}. Something you shared sounded really heavy, and"


def private_resources_message(crisis_resources: str, guild_name: str | None = None) -> str:
    """Sent when the member has not agreed to a moderator alert: only they see it."""
    return (
        f"{_opening(guild_name)} I wanted to check in privately. You don't have to carry this alone, and "
        "things can get better with support.\n\n"
        f"{crisis_resources}\n\n"
        "Nobody else has been told about this message. If you'd like a moderator to reach out to you, "
        "you can change that any time with `/peercare safety`."
    )


def ask_first_message(crisis_resources: str, guild_name: str | None = None) -> str:
    """Sent when the member chose "ask me first": a yes/no question, with resources either way."""
    return (
        f"{_opening(guild_name)} I wanted to check in with you privately first. You matter, and support "
        "is available.\n\n"
        "**Would you like one of the server's moderators to reach out to you?** Nothing has been shared "
        "with them yet; it's your choice.\n\n"
        f"{crisis_resources}"
    )


def ask_first_yes_reply() -> str:
    return (
        "Thank you for letting us help. The moderators have been told, and one of them will reach out to you soon. "
        "If you are in immediate danger, please contact your local emergency number or a crisis line now."
    )


def ask_first_no_reply(crisis_resources: str) -> str:
    return (
        "That's completely okay — nobody has been told. The resources below are there any time you need "
        f"them, and you're always welcome to reach out.\n\n{crisis_resources}"
    )


def talk_request_without_consent(crisis_resources: str) -> str:
    """A check-in "I'd like to talk to someone" when the member has not allowed moderator alerts."""
    return (
        "Thank you for saying so — reaching out takes courage. Your safety settings say not to alert the "
        "moderators, so I haven't told anyone. You can message any moderator of the server directly, or "
        "allow PeerCare to let them know with `/peercare safety choice:yes`.\n\n"
        f"If you need someone right now:\n{crisis_resources}"
    )


def moderator_on_the_way() -> str:
    return (
        "Thank you for telling me. I've let the server's moderators know, and one of them will reach out "
        "to you soon. If you are in immediate danger, please contact your local emergency number now."
    )
