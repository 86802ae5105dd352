"""Per-guild settings with defaults: read them anywhere, change them only through here (audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import GuildSettings
from bot.services import audit

DEFAULT_CRISIS_RESOURCES = (
    "If you are in immediate danger, call your local emergency number.\n"
    "You can reach a crisis line any time: in the US call or text 988; in the UK and Ireland call "
    "Samaritans on 116 123; elsewhere, find a local helpline at https://findahelpline.com."
)

EDITABLE_FIELDS = frozenset(
    {
        "alert_channel_id",
        "moderator_role_id",
        "risk_thresholds",
        "crisis_resources",
        "coaching_default",
        "default_escalation_consent",
        "shadow_mode",
        "coaching_interval_minutes",
        "coaching_daily_cap",
        "realert_after_minutes",
    }
)


async def find(session: AsyncSession, guild_id: int) -> GuildSettings | None:
    """The guild's settings row if it has one (reading never creates it)."""
    return await session.get(GuildSettings, guild_id)


async def get_or_create(session: AsyncSession, guild_id: int) -> GuildSettings:
    """The guild's settings row; a new guild starts in shadow mode so nothing is sent until set up."""
    settings = await session.get(GuildSettings, guild_id)
    if settings is None:
        try:
            async with session.begin_nested():
                settings = GuildSettings(guild_id=guild_id)
                session.add(settings)
        except IntegrityError:  # another event handler created it at the same moment
            settings = await session.get(GuildSettings, guild_id)
            assert settings is not None
    return settings


async def update(session: AsyncSession, guild_id: int, actor_id: int, **changes: Any) -> GuildSettings:
    """Apply moderator changes and audit which settings changed (names only, not values of free text)."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"unknown guild settings: {', '.join(sorted(unknown))}")
    settings = await get_or_create(session, guild_id)
    changed = []
    for name, value in changes.items():
        if getattr(settings, name) != value:
            setattr(settings, name, value)
            changed.append(name)
    if changed:
        audit.record(
            session, "guild_settings.updated", guild_id=guild_id, actor_id=actor_id, changed=sorted(changed)
        )
    return settings


def crisis_resources_text(settings: GuildSettings) -> str:
    return settings.crisis_resources or DEFAULT_CRISIS_RESOURCES
