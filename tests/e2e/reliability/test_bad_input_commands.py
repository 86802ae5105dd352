"""Bad slash-command arguments get a clear private error and store nothing; the bot keeps answering.

Times, time zones, thresholds, crisis texts and channels of the wrong type, each sent as the member or
moderator would, against the real bot. Discord itself enforces ``min_value``/``max_value`` on integer
options (the loopback server, like a modified client, does not), so those are checked in what the bot syncs.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.db.models import Base
from bot.services import checkins, guild_settings, support_channels
from tests.discord_server.interactions import OptionType
from tests.e2e.reliability._bot_loop import bot_on_its_own_loop, copy_database

pytestmark = pytest.mark.e2e

GOOD_TIME, GOOD_ZONE = "21:00", "Europe/Paris"
BAD_TIMES = [
    "25:00",
    "noon",
    "",
    "24:00",
    "9:60",
    "-1:00",
    "9pm",
    "21:00:00",
    "\u200b",
    "9",
    "12:3O",
    "x" * 500,
]
BAD_ZONES = [
    "Mars/Olympus_Mons",
    "",
    "   ",
    "../../etc/passwd",
    "/etc/localtime",
    "Europe",
    "UTC+25",
    "Europe/Berlin\u200b",
    "Europe/Berlin\\..\\x",
    "a" * 300,
    "@everyone",
]
BAD_THRESHOLDS = [
    "1.5",
    "-0.1",
    "nan",
    "inf",
    "-inf",
    "abc",
    "",
    "suicidal=2",
    "nosuchlabel=0.5",
    "0.8;;x",
    "1e400",
]
GENERIC_FAILURE = "Something went wrong on my side"


async def database_rows(e2e) -> dict[str, list[tuple[Any, ...]]]:
    rows = {}
    async with e2e.database.session() as session:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = [tuple(row) for row in (await session.execute(select(table))).all()]
    return rows


async def _refused(e2e, path: str, options: dict[str, Any], user, *, set_up_first: bool = True) -> str:
    """Run the command; it must answer privately with a clear refusal, store nothing and log no error.

    ``set_up_first``: the guild has its settings row already (as when a moderator adjusts settings);
    without it the refusal must not create one either.
    """
    if set_up_first:
        async with e2e.database.session() as session:
            await guild_settings.get_or_create(session, e2e.cast.guild.id)
    before = await database_rows(e2e)
    command = await e2e.slash(path, options, user=user)
    answer = await command.reply(timeout=15.0)
    await e2e.settle(quiet=0.1)
    text = command.text
    assert answer.ephemeral, (path, options)
    assert text and GENERIC_FAILURE not in text and len(text) <= 2000, (path, options, text)
    assert "Saved" not in text and "are on" not in text, (path, options, text)
    assert await database_rows(e2e) == before, (path, options)
    assert e2e.logged_errors() == [], (path, options)
    return text


async def test_bad_checkin_times_and_zones_are_refused_clearly(e2e):
    tried = 0
    for time in BAD_TIMES:
        text = await _refused(
            e2e,
            "peercare checkin on",
            {"cadence": "daily", "time": time, "timezone": GOOD_ZONE},
            e2e.cast.alice,
        )
        assert "HH:MM" in text
        tried += 1
    for zone in BAD_ZONES:
        text = await _refused(
            e2e,
            "peercare checkin on",
            {"cadence": "weekly", "time": GOOD_TIME, "timezone": zone},
            e2e.cast.alice,
        )
        assert "time zone" in text
        tried += 1
    # Still working: a good request after all the bad ones is saved.
    command = await e2e.slash(
        "peercare checkin on",
        {"cadence": "daily", "time": GOOD_TIME, "timezone": GOOD_ZONE},
        user=e2e.cast.alice,
    )
    assert "Check-ins are on" in (await command.reply()).content
    assert tried == len(BAD_TIMES) + len(BAD_ZONES)


async def test_bad_thresholds_are_refused_clearly(e2e):
    for value in BAD_THRESHOLDS:
        for option in ("high_threshold", "elevated_threshold"):
            text = await _refused(e2e, "peercare setup", {option: value}, e2e.cast.moderator)
            assert option in text
    text = await _refused(
        e2e, "peercare setup", {"high_threshold": "0.5", "elevated_threshold": "0.9"}, e2e.cast.moderator
    )
    assert "must not be above" in text


async def test_blank_crisis_resources_and_everyone_as_moderator_role_are_refused(e2e):
    text = await _refused(e2e, "peercare setup", {"crisis_resources": " \\n \u200b "}, e2e.cast.moderator)
    assert "crisis resources" in text
    text = await _refused(
        e2e, "peercare setup", {"moderator_role": e2e.cast.everyone_role}, e2e.cast.moderator
    )
    assert "@everyone" in text


async def test_a_refused_setup_on_a_new_server_stores_no_settings(e2e):
    """The first /peercare setup, refused, leaves no default settings row and no audit entry behind."""
    refusals = [
        ({"high_threshold": "1.5"}, "high_threshold"),
        ({"elevated_threshold": "abc", "shadow_mode": False}, "elevated_threshold"),
        ({"high_threshold": "0.5", "elevated_threshold": "0.9"}, "must not be above"),
        ({"crisis_resources": " \\n \u200b "}, "crisis resources"),
        ({"moderator_role": e2e.cast.everyone_role}, "@everyone"),
        ({"alert_channel": e2e.cast.support_thread}, "cannot be used here"),
    ]
    for options, said in refusals:
        text = await _refused(e2e, "peercare setup", options, e2e.cast.moderator, set_up_first=False)
        assert said in text, (options, text)
    rows = await database_rows(e2e)
    assert rows["guild_settings"] == [] and rows["audit_log"] == []


async def test_channels_of_the_wrong_type_are_refused_clearly(e2e):
    thread = e2e.cast.support_thread  # a thread where a text channel is needed
    text = await _refused(e2e, "peercare setup", {"alert_channel": thread}, e2e.cast.moderator)
    assert text.startswith(f"{thread.mention} cannot be used here: pick a text")
    text = await _refused(e2e, "peercare channel add", {"channel": thread}, e2e.cast.moderator)
    assert text.startswith(f"{thread.mention} cannot be used here: pick a text") and "forum" in text
    async with e2e.database.session() as session:
        assert await support_channels.list_channel_ids(session, e2e.cast.guild.id) == []


def _integer_options(commands: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []

    def walk(options: list[dict[str, Any]], path: str) -> None:
        for option in options:
            if option["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
                walk(option.get("options") or [], f"{path} {option['name']}")
            elif option["type"] in (OptionType.INTEGER, OptionType.NUMBER):
                found.append((f"{path} {option['name']}", option))

    for command in commands:
        walk(command.get("options") or [], command["name"])
    return found


async def test_every_number_option_is_bounded_in_what_discord_enforces(e2e):
    numbers = _integer_options(e2e.server.commands["global"])
    assert numbers, "no number options synced: the check below proves nothing"
    for name, option in numbers:
        assert "min_value" in option and "max_value" in option, name


GENERATED_COMMANDS = 15


@pytest.fixture
def bot_loop(monkeypatch, migrated_database_template, tmp_path, tiny_model_cache, loaded_engines):
    config = tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0})
    with bot_on_its_own_loop(
        monkeypatch, copy_database(migrated_database_template, tmp_path), config, loaded_engines
    ) as running:
        yield running


def test_any_checkin_time_and_zone_is_saved_or_refused_clearly(bot_loop):
    """Property-based: whatever a member types, /peercare checkin on saves a valid schedule or changes nothing."""
    loop, e2e = bot_loop
    tried: list[tuple[str, str]] = []

    async def run(time: str, zone: str) -> None:
        before = await database_rows(e2e)
        command = await e2e.slash(
            "peercare checkin on", {"cadence": "daily", "time": time, "timezone": zone}, user=e2e.cast.bob
        )
        answer = await command.reply(timeout=15.0)
        assert answer.ephemeral and GENERIC_FAILURE not in answer.content
        assert e2e.logged_errors() == []
        async with e2e.database.session() as session:
            schedule = await checkins.find_schedule(session, e2e.cast.guild.id, e2e.cast.bob.id)
        if answer.content.startswith("Check-ins are on"):
            assert schedule is not None and schedule.timezone == zone.strip()
            hour, minute = map(int, schedule.time_of_day.split(":"))
            assert 0 <= hour < 24 and 0 <= minute < 60
        else:
            assert await database_rows(e2e) == before

    @settings(
        max_examples=GENERATED_COMMANDS, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        time=st.one_of(st.text(max_size=12), st.text(alphabet="0123456789:.h ", max_size=6)),
        zone=st.one_of(st.text(max_size=30), st.sampled_from(sorted(zoneinfo.available_timezones()))),
    )
    def saved_or_refused(time: str, zone: str) -> None:
        tried.append((time, zone))
        loop.run(run(time, zone))

    saved_or_refused()
    assert len(tried) >= GENERATED_COMMANDS // 2
