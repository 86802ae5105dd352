"""Malformed gateway events (missing fields, wrong types, unknown ids) never stop the bot.

Each payload below is dispatched raw, as the gateway would send it; afterwards a normal seeker post is still
risk-scored and a slash command still answered. Discord does not normally send such events, but a gateway
change, a proxy or a library gap can; one bad event must cost at most itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.discord_server.world import Cast
from tests.e2e import safety_support
from tests.e2e._features import eventually, risk_row
from tests.e2e.reliability._bot_loop import bot_on_its_own_loop, copy_database

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "1099511627776123"
GENERATED_EVENTS = 15
# Logged by the bot's guard around discord.py's parsers ("dropped a MESSAGE_CREATE event ..."), or by the reply
# pipeline for a message discord.py let through with a field of the wrong type (content or type a number or
# a dict): that message's failure only.
EXPECTED_ERRORS = ("dropped a ", "failed to process message ", "failed to re-score edited message ")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _message(cast: Cast, **fields: Any) -> dict[str, Any]:
    """A well-formed MESSAGE_CREATE for a post by Alice in #support, with ``fields`` replaced."""
    data: dict[str, Any] = {
        "id": "1574000000000000001",
        "channel_id": str(cast.support.id),
        "guild_id": str(cast.guild.id),
        "author": {"id": str(cast.alice.id), "username": "alice", "discriminator": "0", "avatar": None},
        "member": {"roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False},
        "content": "A malformed day",
        "timestamp": "2024-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
    }
    for name, value in fields.items():
        if value is ...:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def malformed_events(cast: Cast) -> list[tuple[str, Any]]:
    guild, support = str(cast.guild.id), str(cast.support.id)
    return [
        ("MESSAGE_CREATE", _message(cast, author=...)),
        ("MESSAGE_CREATE", _message(cast, content=...)),
        ("MESSAGE_CREATE", _message(cast, content=12345)),
        ("MESSAGE_CREATE", _message(cast, id="not-a-snowflake")),
        ("MESSAGE_CREATE", _message(cast, channel_id=UNKNOWN_ID)),
        ("MESSAGE_CREATE", _message(cast, guild_id=UNKNOWN_ID)),
        ("MESSAGE_CREATE", _message(cast, channel_id=UNKNOWN_ID, guild_id=UNKNOWN_ID)),
        ("MESSAGE_CREATE", _message(cast, author={"id": "x"})),
        ("MESSAGE_CREATE", _message(cast, mentions="everyone")),
        ("MESSAGE_CREATE", _message(cast, type=999)),
        ("MESSAGE_CREATE", _message(cast, type=19, message_reference={"message_id": UNKNOWN_ID})),
        ("MESSAGE_CREATE", _message(cast, type=19, referenced_message={"id": UNKNOWN_ID})),
        ("MESSAGE_CREATE", _message(cast, embeds=[{"type": "rich", "fields": "x"}])),
        ("MESSAGE_CREATE", {}),
        ("MESSAGE_CREATE", None),
        ("MESSAGE_UPDATE", {"id": UNKNOWN_ID, "channel_id": support, "guild_id": guild}),
        ("MESSAGE_UPDATE", {"id": UNKNOWN_ID}),
        ("MESSAGE_DELETE", {"id": "x", "channel_id": support}),
        ("MESSAGE_DELETE_BULK", {"ids": "x", "channel_id": support}),
        ("GUILD_MEMBER_REMOVE", {"guild_id": UNKNOWN_ID, "user": {"id": str(cast.alice.id)}}),
        ("GUILD_MEMBER_REMOVE", {"guild_id": guild}),
        ("THREAD_CREATE", {"id": UNKNOWN_ID, "guild_id": guild, "type": 11}),
        ("GUILD_DELETE", {"id": UNKNOWN_ID}),
        (
            "INTERACTION_CREATE",
            {"id": UNKNOWN_ID, "type": 2, "token": "t", "application_id": str(cast.bot.id)},
        ),
        ("INTERACTION_CREATE", {"id": UNKNOWN_ID, "type": 99, "token": "t", "version": 1}),
        ("INTERACTION_CREATE", {"type": 2, "data": {"name": "peercare", "id": UNKNOWN_ID}}),
        ("INTERACTION_CREATE", {}),
        ("SOMETHING_DISCORD_ADDS_LATER", {"id": UNKNOWN_ID}),
    ]


async def _still_working(e2e, text: str) -> None:
    post = await e2e.say(e2e.cast.support, e2e.cast.carol, text)
    await eventually(lambda: risk_row(e2e, post.id), timeout=10, what="a normal post to be risk-scored")
    command = await e2e.slash("peercare safety", {"choice": "ask"}, user=e2e.cast.carol)
    assert "Saved" in (await command.reply()).content


@pytest.fixture
def events(e2e) -> list[tuple[str, Any]]:
    return malformed_events(e2e.cast)


async def test_malformed_gateway_events_do_not_stop_the_bot(e2e, events):
    await safety_support.go_live(e2e)
    e2e.expect_errors()  # a malformed event may be logged as an error; it must not stop the bot
    identifies = len(e2e.gateway.identifies)

    for index, (event, data) in enumerate(events):
        await e2e.gateway.dispatch(event, data)
        await _still_working(e2e, f"Still here after malformed event number {index}")

    assert len(e2e.gateway.identifies) == identifies, "the bot had to reconnect"
    unexpected = [
        r.getMessage() for r in e2e.logged_errors() if not r.getMessage().startswith(EXPECTED_ERRORS)
    ]
    assert unexpected == []


async def test_interactions_with_forged_custom_ids_get_a_clear_answer(e2e):
    cast = e2e.cast
    await safety_support.go_live(e2e)
    anchor = await e2e.say(cast.support, cast.alice, "Anchor for forged buttons")
    for custom_id in (
        "peercare:alert:acknowledge:999999",
        "peercare:askfirst:yes:999999",
        f"peercare:forget:confirm:{cast.bob.id}",
        "peercare:checkin:okay:999999",
        "peercare:nothing:here",
    ):
        anchor.components = [
            {"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": custom_id}]}
        ]
        click = await e2e.click(anchor, custom_id, user=cast.alice)
        await e2e.settle(quiet=0.1)
        if custom_id != "peercare:nothing:here":
            answer = await click.reply()
            # e.g. "This alert no longer exists.", "Only the member who asked can confirm this."
            assert answer.content and not answer.content.startswith("Something went wrong"), custom_id
    assert e2e.logged_errors() == []
    await _still_working(e2e, "Still here after forged buttons")


@st.composite
def mutated_messages(draw: st.DrawFn, cast: Cast) -> tuple[str, dict[str, Any]]:
    """A MESSAGE_CREATE/UPDATE for #support with up to four fields removed or replaced by any JSON value."""
    data = _message(cast, id=str(draw(st.integers(1, 2**63 - 1))))
    for field in draw(st.lists(st.sampled_from(sorted(data)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del data[field]
        else:
            data[field] = draw(JSON_VALUES)
    return draw(st.sampled_from(["MESSAGE_CREATE", "MESSAGE_UPDATE"])), data


@pytest.fixture
def bot_loop(monkeypatch, migrated_database_template, tmp_path, tiny_model_cache, loaded_engines):
    config = tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0})
    with bot_on_its_own_loop(
        monkeypatch, copy_database(migrated_database_template, tmp_path), config, loaded_engines
    ) as running:
        yield running


def test_randomly_mangled_message_events_do_not_stop_the_bot(bot_loop):
    """Property-based: any mangling of a message event costs at most that event."""
    loop, e2e = bot_loop
    loop.run(safety_support.go_live(e2e))
    e2e.expect_errors()
    identifies = len(e2e.gateway.identifies)
    tried = []

    async def dispatch_then_check(event: str, data: dict[str, Any]) -> None:
        await e2e.gateway.dispatch(event, data)
        post = await e2e.say(
            e2e.cast.support, e2e.cast.carol, f"Still reading after mangled event {len(tried)}"
        )
        await eventually(lambda: risk_row(e2e, post.id), timeout=10, what="a normal post to be risk-scored")

    @settings(
        max_examples=GENERATED_EVENTS, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(mutated_messages(e2e.cast))
    def survives(mangled: tuple[str, dict[str, Any]]) -> None:
        tried.append(mangled)
        loop.run(dispatch_then_check(*mangled))

    survives()

    dropped = sum(r.getMessage().startswith("dropped a ") for r in e2e.logged_errors())
    print(f"mangled message events tried: {len(tried)}, dropped as unreadable: {dropped}")
    assert len(tried) >= GENERATED_EVENTS // 2
    assert len(e2e.gateway.identifies) == identifies, "the bot had to reconnect"
    unexpected = [
        r.getMessage() for r in e2e.logged_errors() if not r.getMessage().startswith(EXPECTED_ERRORS)
    ]
    assert unexpected == []
