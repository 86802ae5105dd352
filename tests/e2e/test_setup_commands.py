"""Moderator setup: support channels and `/peercare setup`, Manage Server only, every change audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.models import AuditLogEntry, CoachingDefault, GuildSettings
from bot.services import support_channels
from tests.e2e._features import add_support_channel, configure, settings_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _guild_settings(e2e) -> GuildSettings | None:
    async with e2e.database.session() as session:
        return await session.get(GuildSettings, e2e.cast.guild.id)


async def test_channel_add_requires_manage_server(e2e):
    command = await e2e.slash("peercare channel add", {"channel": e2e.cast.support}, user=e2e.cast.bob)
    answer = await command.reply()
    assert answer.ephemeral and "Manage Server" in answer.content
    async with e2e.database.session() as session:
        assert await support_channels.list_channel_ids(session, e2e.cast.guild.id) == []


async def test_channel_list_shows_the_support_channels(e2e):
    await add_support_channel(e2e)
    await add_support_channel(e2e, e2e.cast.mod_alerts)
    command = await e2e.slash("peercare channel list", user=e2e.cast.moderator)
    answer = await command.reply()
    assert answer.ephemeral
    assert e2e.cast.support.mention in answer.content and e2e.cast.mod_alerts.mention in answer.content
    assert e2e.cast.general.mention not in answer.content


async def test_channel_list_requires_manage_server(e2e):
    command = await e2e.slash("peercare channel list", user=e2e.cast.alice)
    assert "Manage Server" in (await command.reply()).content


async def test_setup_saves_settings_and_audits_the_change(e2e):
    text = await configure(
        e2e,
        alert_channel=e2e.cast.mod_alerts,
        moderator_role=e2e.cast.moderator_role,
        shadow_mode=False,
        coaching_default="opt_out",
        coaching_interval_minutes=15,
        coaching_daily_cap=3,
        realert_minutes=20,
        crisis_resources="Call our community line: 0800 000 000",
    )
    assert text.startswith("Saved.")
    settings = await _guild_settings(e2e)
    assert settings.alert_channel_id == e2e.cast.mod_alerts.id
    assert settings.moderator_role_id == e2e.cast.moderator_role.id
    assert settings.shadow_mode is False and settings.coaching_default is CoachingDefault.OPT_OUT
    assert (settings.coaching_interval_minutes, settings.coaching_daily_cap) == (15, 3)
    assert settings.realert_after_minutes == 20
    assert settings.crisis_resources == "Call our community line: 0800 000 000"
    async with e2e.database.session() as session:
        entry = await session.scalar(
            select(AuditLogEntry).where(AuditLogEntry.action == "guild_settings.updated")
        )
    assert entry.actor_id == e2e.cast.moderator.id
    assert "crisis_resources" in entry.details["changed"]
    assert "0800" not in str(entry.details)  # names of settings, never free text


async def test_setup_without_options_shows_the_current_settings(e2e):
    text = await configure(e2e)
    assert "Current settings" in text
    assert "Shadow mode" in text and "model card defaults" in text


async def test_setup_threshold_per_label_is_saved(e2e):
    text = await configure(e2e, high_threshold="suicidal=0.6")
    assert "suicidal: high ≥ 0.60" in text
    settings = await _guild_settings(e2e)
    assert settings.risk_thresholds["high"]["suicidal"] == 0.6


async def test_setup_threshold_for_every_main_label(e2e):
    await configure(e2e, high_threshold="0.95")
    settings = await _guild_settings(e2e)
    assert set(settings.risk_thresholds["high"].values()) == {0.95}


async def test_setup_threshold_outside_zero_to_one_is_refused_clearly(e2e):
    text = await configure(e2e, high_threshold="1.5")
    assert "between 0 and 1" in text
    settings = await _guild_settings(e2e)
    assert settings is None or settings.risk_thresholds is None


async def test_setup_threshold_default_goes_back_to_the_model_card(e2e):
    await configure(e2e, high_threshold="0.95")
    await configure(e2e, high_threshold="default")
    assert (await _guild_settings(e2e)).risk_thresholds is None


async def test_setup_requires_manage_server(e2e):
    command = await e2e.slash("peercare setup", {"shadow_mode": False}, user=e2e.cast.alice)
    answer = await command.reply()
    assert answer.ephemeral and "Manage Server" in answer.content
    settings = await _guild_settings(e2e)
    assert settings is None or settings.shadow_mode is True


async def test_setup_warns_when_live_without_an_alert_channel(e2e):
    text = await configure(e2e, shadow_mode=False)
    assert "No alert channel" in text
