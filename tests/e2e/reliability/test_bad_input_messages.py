"""Any message text — empty, 4,000 characters, zero-width, RTL, emoji, code, mentions, markdown — is handled, and pings no one.

Property-based (hypothesis) against the real bot: one bot per test on its own event loop (see ``_bot_loop``),
each example a seeker post, a reply (coached by DM, quoting the text), a crisis post (a moderator alert with
an excerpt) and a DM to the bot, all carrying the generated text. For every example: no error logged, every
post with scorable text has its risk row and every such reply its scores, nothing else stored, and every
message the bot sent — DMs, alerts, answers — carries ``allowed_mentions`` that ping nobody except the
moderator role, in the alert channel.

Mentions inside the alert's embed (the excerpt) cannot ping on Discord whatever allowed_mentions says; the
alert's *content*, which can, never carries member text.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.db.models import EscalationConsent, utcnow
from bot.services import checkins
from bot.services.reply_scoring import has_scorable_text
from tests.discord_server.world import Cast
from tests.e2e import safety_support
from tests.e2e._features import eventually, risk_row, stored_reply
from tests.e2e._mention_safety import mention_problems
from tests.e2e.reliability._bot_loop import bot_on_its_own_loop, copy_database

pytestmark = pytest.mark.e2e

GENERATED_EXAMPLES = 12
DISCORD_NITRO_LIMIT = 4000
ANCHOR_POST = "I had a rough week and I can't sleep at night"
TRICKY_PIECES = [
    "@everyone",
    "@here",
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte-order mark
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u2067",  # right-to-left isolate
    "مرحبا، أشعر بالوحدة",
    "שלום",
    "😀",
    "👩🏽‍💻",
    "🏳️‍🌈",
    "```py\nprint('hi')\n```",
    "`code`",
    "**bold**",
    "__underline__",
    "~~strike~~",
    "||spoiler||",
    "> quoted",
    "# Heading",
    "-# small",
    "[link](https://example.com)",
    "\\",
    "\n",
    " ",
]


def message_texts(cast: Cast) -> st.SearchStrategy[str]:
    users = [cast.alice.id, cast.bob.id, cast.moderator.id, cast.bot.id, 1]
    roles = [cast.moderator_role.id, cast.everyone_role.id, 2]
    piece = st.one_of(
        st.text(max_size=30),
        st.sampled_from(TRICKY_PIECES),
        st.sampled_from(users).map(lambda i: f"<@{i}>"),
        st.sampled_from(users).map(lambda i: f"<@!{i}>"),
        st.sampled_from(roles).map(lambda i: f"<@&{i}>"),
        st.sampled_from([cast.general.id, cast.mod_alerts.id]).map(lambda i: f"<#{i}>"),
    )
    short = st.lists(piece, max_size=10).map("".join)
    at_the_limit = st.lists(piece, min_size=1, max_size=5).map("".join).filter(bool)
    huge = at_the_limit.map(lambda s: (s * DISCORD_NITRO_LIMIT)[:DISCORD_NITRO_LIMIT])
    return st.one_of(short, short, short, huge)


def fixed_examples(cast: Cast) -> list[str]:
    """The inputs issue 8 names, always tried (hypothesis adds random ones)."""
    mentions = f"@everyone @here <@{cast.bob.id}> <@!{cast.alice.id}> <@&{cast.moderator_role.id}>"
    return [
        "",
        "   \n\t ",
        "\u200b\u200c\u200d\u2060\ufeff",
        "\u200f\u200e\u00ad\u2061",  # direction marks, soft hyphen, function application: invisible too
        "x" * DISCORD_NITRO_LIMIT,
        ("I feel so alone 😔 " * 300)[:DISCORD_NITRO_LIMIT],
        f"{mentions} please help",
        f"<@{cast.bot.id}> help",
        "\u202eI can't take this anymore\u202c مرحبا",
        "```\n@everyone <@&1>\n```",
        "**__~~||> # everything||~~__**",
    ]


@pytest.fixture
def bot_loop(monkeypatch, migrated_database_template, tmp_path, tiny_model_cache, loaded_engines):
    config = tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0})
    with bot_on_its_own_loop(
        monkeypatch,
        copy_database(migrated_database_template, tmp_path),
        config,
        loaded_engines,
        {"risk_model": config.risk_source},
    ) as running:
        yield running


async def _go_live(e2e):
    cast = e2e.cast
    await safety_support.go_live(
        e2e, EscalationConsent.YES, coaching_interval_minutes=0, coaching_daily_cap=50
    )
    await (await e2e.slash("peercare coaching on", user=cast.bob, channel=cast.support)).reply()
    anchor = await e2e.say(cast.support, cast.carol, ANCHOR_POST)
    await eventually(lambda: risk_row(e2e, anchor.id), what="the anchor post's risk row")
    return anchor


async def _send_everywhere(e2e, anchor, text: str) -> None:
    cast = e2e.cast
    start, errors_before = len(e2e.requests.all), len(e2e.logged_errors())
    post = await e2e.say(cast.support, cast.alice, text)
    reply = await e2e.say(cast.support, cast.bob, text, reply_to=anchor)
    crisis = await e2e.say(cast.support, cast.carol, f"{text} {safety_support.CRISIS_POST}")
    await e2e.say(e2e.dm_channel(cast.alice), cast.alice, text)

    await eventually(lambda: risk_row(e2e, crisis.id), what="the crisis post's risk row")
    if has_scorable_text(text):
        await eventually(lambda: risk_row(e2e, post.id), what="the post's risk row")
        await eventually(lambda: stored_reply(e2e, reply.id), what="the reply's scores")
    await e2e.settle(quiet=0.2)

    assert [r.getMessage() for r in e2e.logged_errors()[errors_before:]] == []
    if not has_scorable_text(text):
        assert await risk_row(e2e, post.id) is None
        assert await stored_reply(e2e, reply.id) is None
    refused = [
        f"{r.method} {r.route} -> {r.status} {r.response}"
        for r in e2e.requests.all[start:]
        if r.status >= 400
    ]
    assert refused == [], "Discord refused what the bot sent (too long? malformed?)"
    assert (
        mention_problems(
            e2e.requests.all[start:],
            alert_channel_id=cast.mod_alerts.id,
            moderator_role_id=cast.moderator_role.id,
        )
        == []
    )


def test_any_message_text_is_handled_and_pings_no_one(bot_loop):
    loop, e2e = bot_loop
    anchor = loop.run(_go_live(e2e))
    tried: list[str] = []

    @settings(
        max_examples=GENERATED_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=message_texts(e2e.cast))
    def handled(text: str) -> None:
        tried.append(text)
        loop.run(_send_everywhere(e2e, anchor, text))

    for text in fixed_examples(e2e.cast):
        handled = example(text=text)(handled)
    handled()

    alerts = safety_support.alerts(e2e)
    assert len(tried) >= len(fixed_examples(e2e.cast)) + GENERATED_EXAMPLES // 2
    assert alerts, "no crisis post reached the moderators: the excerpt path was not exercised"
    for alert in alerts:
        # What can ping is the content: the fixed call to the moderator role, never the member's words.
        assert alert.content.startswith(f"<@&{e2e.cast.moderator_role.id}> A member may need support.")
        assert "@everyone" not in alert.content and "@here" not in alert.content
    coaching_dms = e2e.dms_to(e2e.cast.bob)
    assert coaching_dms, "no coaching DM quoted a reply: the DM path was not exercised"
    print(
        f"message texts tried: {len(tried)} ({len(alerts)} alerts, {len(coaching_dms)} DMs to the responder)"
    )


async def test_mentioning_the_bot_is_not_a_command_error(e2e):
    """PeerCare has slash commands only; "@PeerCare help" must not be looked up as a prefix command."""
    await safety_support.go_live(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, f"<@{e2e.cast.bot.id}> help, I feel awful today")
    await e2e.say(e2e.cast.general, e2e.cast.bob, f"<@{e2e.cast.bot.id}> help")
    await e2e.say(e2e.dm_channel(e2e.cast.carol), e2e.cast.carol, f"<@{e2e.cast.bot.id}> help")

    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk row")
    await e2e.settle()

    assert e2e.logged_errors() == []


CHECKIN_NOTES = [
    "\u200b\u200f",  # invisible only: "the box was empty", not a models' refusal logged as an error
    "   ",
    "@everyone <@&{role}> <@{bob}> please",
    "```\nI can't go on\n```",
    "x" * 1000,  # the form's limit
    "مرحبا 😔 ||I feel so alone||",
]


async def test_any_checkin_note_gets_a_kind_answer_and_no_error(e2e):
    cast = e2e.cast
    await safety_support.go_live(e2e, EscalationConsent.ASK_FIRST)
    for day, template in enumerate(CHECKIN_NOTES):
        note = template.format(role=cast.moderator_role.id, bob=cast.bob.id)
        # On again each time: an empty note leaves the check-in unanswered, and two of those pause them.
        command = await e2e.slash(
            "peercare checkin on", {"cadence": "daily", "time": "09:30", "timezone": "UTC"}, user=cast.alice
        )
        await command.reply()
        async with e2e.database.session() as session:
            schedule = await checkins.find_schedule(session, cast.guild.id, cast.alice.id)
        job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
        # Each note at a later day's slot: one check-in per slot.
        assert await job.func(*job.args, now=utcnow() + timedelta(days=day)) is True
        dm = await e2e.wait_for_dm(cast.alice, lambda m: any(":note:" in c for c in m.custom_ids()))
        checkin_id = int(dm.custom_ids()[0].rsplit(":", 1)[1])
        opened = await e2e.click(dm, f"peercare:checkin:note:{checkin_id}", user=cast.alice)
        await opened.response()
        submitted = await e2e.submit_modal(opened, {"note": note})
        answer = await submitted.reply(timeout=15.0)
        await e2e.settle(quiet=0.1)

        assert answer.content and "Something went wrong" not in answer.content, note
        assert [r.getMessage() for r in e2e.logged_errors()] == [], note
