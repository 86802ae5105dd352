"""`peercare score` and `peercare replay`: what PeerCare would do with a reply, offline, without Discord.

Both use the shipped models through the in-process backend and the same coaching composer as the bot.
Nothing here logs message text: it is printed to the user's own terminal or written to their own file.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.db.models import EscalationConsent, GuildSettings
from bot.services.coaching import (
    NO_NOTE_AUTHOR_AT_RISK,
    ReplyForCoaching,
    author_may_be_in_danger,
    compose_note,
)
from bot.services.reply_scoring import has_scorable_text
from inference.client import InferenceClient
from inference.empathy.phatic import is_bare_echo, is_phatic
from inference.types import EmpathyLevel, Mechanism, ReplyScore, ReplyScoreRequest, RiskResult, RiskTier

log = logging.getLogger(__name__)

LEVEL_NAMES = {0: "none", 1: "weak", 2: "strong"}
_ANSI = {
    Mechanism.EMOTIONAL_REACTIONS: "\033[1;31m",
    Mechanism.INTERPRETATIONS: "\033[1;34m",
    Mechanism.EXPLORATIONS: "\033[1;32m",
}
_ANSI_RESET = "\033[0m"
REPLAY_CONCURRENCY = 64
PREVIEW_URL = "(link to your reply)"
_SHADOW_NOTE = " (A new server starts in shadow mode: this is only recorded until a moderator turns it off.)"


class InputError(Exception):
    """The user's input cannot be used (missing file, missing column, empty text); nothing was scored."""


# -- what escalation would do -------------------------------------------------------------------------


def _default_guild() -> GuildSettings:
    # A guild's settings as `/peercare setup` starts them (the column defaults), without a database.
    settings = GuildSettings(guild_id=0)
    for column in GuildSettings.__table__.columns:
        if getattr(settings, column.key) is None and column.default is not None and column.default.is_scalar:
            setattr(settings, column.key, column.default.arg)
    return settings


def describe_escalation(tier: RiskTier) -> str:
    """What the bot would do with a seeker post of this tier under a new guild's default consent settings."""
    try:
        from bot.services.escalation_policy import (
            describe_default_outcome,  # the safety agent's pure description
        )
    except ImportError:
        describe_default_outcome = None
    guild = _default_guild()
    consent = guild.default_escalation_consent
    if describe_default_outcome is not None:
        text = str(describe_default_outcome(tier, consent))
        if tier is RiskTier.HIGH and guild.shadow_mode:
            text += _SHADOW_NOTE
        return text
    if tier is not RiskTier.HIGH:
        return f"No escalation: only high-tier posts lead to action (this post is {tier.value})."
    action = {
        EscalationConsent.ASK_FIRST: "the member is asked privately whether moderators may be alerted; "
        "moderators see nothing unless they say yes",
        EscalationConsent.YES: "moderators are alerted in the alert channel, with a link and a short excerpt",
        EscalationConsent.NO: "the member privately gets the server's crisis resources; no moderator sees the post",
    }[consent]
    text = f"Escalation (default consent: {consent.value}): {action}."
    if guild.shadow_mode:
        text += _SHADOW_NOTE
    return text


# -- scoring --------------------------------------------------------------------------------------------


def _offline_client() -> InferenceClient:
    from bot.inference_config import inference_config_from_settings
    from bot.settings import load_settings
    from inference.factory import create_inference_client

    config = inference_config_from_settings(load_settings())
    return create_inference_client(dataclasses.replace(config, backend="inprocess"))


def _risk_json(risk: RiskResult) -> dict[str, Any]:
    return {
        "tier": risk.tier.value,
        "probabilities": {label: round(p, 4) for label, p in risk.probabilities.items()},
        "triggered_labels": list(risk.triggered_labels),
        "phrase_matches": list(risk.phrase_matches),
    }


def result_json(score: ReplyScore, reply_text: str) -> dict[str, Any]:
    """Everything `score` shows, as plain data (the `--json` output and one `replay` record)."""
    empathy = {}
    for mechanism, mechanism_score in score.empathy.by_mechanism().items():
        empathy[mechanism.value] = {
            "level": int(mechanism_score.level),
            "level_name": LEVEL_NAMES[int(mechanism_score.level)],
            "probabilities": [round(p, 4) for p in mechanism_score.probabilities],
            "recogniser_probability": None
            if mechanism_score.recogniser_probability is None
            else round(mechanism_score.recogniser_probability, 4),
            "rationales": [
                {"start": s.start, "end": s.end, "text": s.text} for s in mechanism_score.rationales
            ],
        }
    reply_risk = score.reply_risk
    withheld = reply_risk is not None and author_may_be_in_danger(reply_risk.tier.value)
    note = None if withheld else compose_note(ReplyForCoaching.from_score(score, reply_text, PREVIEW_URL))
    return {
        "empathy": empathy,
        # True: every level above is none by the phatic rule, whatever the probabilities say.
        "reply_is_phatic": is_phatic(reply_text),
        # True: no level above is strong by the bare-echo rule ("lol same"), whatever the probabilities say.
        "reply_is_bare_echo": is_bare_echo(reply_text),
        # None when the reply's own risk stands coaching down (``coaching_withheld`` says why).
        "coaching_dm": None if note is None else note.text,
        "coaching_withheld": NO_NOTE_AUTHOR_AT_RISK if withheld else None,
        "seeker_risk": _risk_json(score.parent_risk),
        # The reply is judged as its author's own message too (a responder can be the one in danger).
        "reply_risk": None if reply_risk is None else _risk_json(reply_risk),
        "reply_escalation": None if reply_risk is None else describe_escalation(reply_risk.tier),
        "escalation": describe_escalation(score.parent_risk.tier),
    }


def highlight(text: str, spans: Sequence[tuple[int, int]], *, ansi: bool, colour: str = "\033[1m") -> str:
    """Mark rationale spans: coloured on a terminal, [brackets] in a pipe or file."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((max(0, s), min(len(text), e)) for s, e in spans if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    out, position = [], 0
    for start, end in merged:
        out.append(text[position:start])
        out.append(f"{colour}{text[start:end]}{_ANSI_RESET}" if ansi else f"[{text[start:end]}]")
        position = end
    out.append(text[position:])
    return "".join(out)


PHATIC_NOTE = (
    "  (only greetings, thanks or acknowledgements: no mechanism, whatever the models' p say; "
    "inference/empathy/phatic.py)"
)
BARE_ECHO_NOTE = (
    '  (only an echo of shared experience, like "same": no mechanism above weak and, without a "?", no Exploration, '
    "whatever the models' p say; inference/empathy/phatic.py)"
)


def render_text(score: ReplyScore, reply_text: str, *, ansi: bool) -> str:
    data = result_json(score, reply_text)
    lines = ["Empathy of the reply (0 none, 1 weak, 2 strong):"]
    for mechanism, mechanism_score in score.empathy.by_mechanism().items():
        level = int(mechanism_score.level)
        probabilities = " ".join(f"{p:.2f}" for p in mechanism_score.probabilities)
        chat = mechanism_score.recogniser_probability
        lines.append(
            f"  {mechanism.value}  {mechanism.display_name:<20} {LEVEL_NAMES[level]} ({level})  p=[{probabilities}]"
            + (f"  chat recogniser {chat:.2f}" if chat is not None else "")
        )
        spans = [(s.start, s.end) for s in mechanism_score.rationales]
        if spans and level > EmpathyLevel.NONE:
            lines.append("      " + highlight(reply_text, spans, ansi=ansi, colour=_ANSI[mechanism]))
    if data["reply_is_phatic"]:
        lines.append(PHATIC_NOTE)
    if data["reply_is_bare_echo"]:
        lines.append(BARE_ECHO_NOTE)
    lines += ["", "Coaching DM the responder would receive:"]
    if data["coaching_withheld"]:
        lines.append("  " + data["coaching_withheld"])
    else:
        lines += ["  " + line if line else "" for line in data["coaching_dm"].splitlines()]
    lines += [
        "",
        f"Seeker post risk tier: {_tier_line(data['seeker_risk'])}",
        f"Escalation under the default consent settings: {data['escalation']}",
    ]
    if data["reply_risk"] is not None:
        lines += [
            f"Reply's own risk tier: {_tier_line(data['reply_risk'])}",
            f"Escalation for the reply's author: {data['reply_escalation']}",
        ]
    return "\n".join(lines)


def _tier_line(risk: dict[str, Any]) -> str:
    labels = ", ".join(risk["triggered_labels"] + risk["phrase_matches"]) or "none"
    return f"{risk['tier']} (triggered by: {labels})"


async def _score_pair(client: InferenceClient, seeker: str, reply: str, index: int = 0) -> ReplyScore:
    return await client.score_reply(
        ReplyScoreRequest(
            parent_id=2 * index + 1,
            parent_text=seeker,
            reply_id=2 * index + 2,
            reply_text=reply,
            score_reply_risk=True,
        )
    )


async def _with_client(work: Callable[[InferenceClient], Any]) -> Any:
    client = _offline_client()
    await client.start()
    try:
        return await work(client)
    finally:
        await client.close()


def _cmd_score(args: argparse.Namespace) -> int:
    for name in ("seeker", "reply"):
        if not has_scorable_text(getattr(args, name)):
            raise InputError(f"--{name} is empty: give the text of the {name} message")
    score = asyncio.run(_with_client(lambda client: _score_pair(client, args.seeker, args.reply)))
    if args.json:
        print(json.dumps(result_json(score, args.reply), ensure_ascii=False))
    else:
        print(render_text(score, args.reply, ansi=sys.stdout.isatty()))
    return 0


# -- replay ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayRow:
    row_id: str
    seeker_id: str
    seeker: str
    reply: str


def read_pairs(path: Path) -> list[ReplayRow]:
    """Rows of (seeker, reply), with optional `id`, `seeker_id`, `reply_id` columns (names are case-insensitive)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {name.strip().casefold(): name for name in reader.fieldnames or []}
            missing = [name for name in ("seeker", "reply") if name not in columns]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header must name `seeker` and `reply`"
                )
            rows = []
            for number, record in enumerate(reader, start=1):

                def cell(name: str, record: dict[str, str | None] = record) -> str:
                    key = columns.get(name)
                    return (record.get(key) or "") if key else ""

                row_id = cell("id") or cell("reply_id") or str(number)
                seeker = cell("seeker")
                seeker_id = cell("seeker_id") or hashlib.sha256(seeker.strip().encode()).hexdigest()[:16]
                rows.append(ReplayRow(row_id, seeker_id, seeker, cell("reply")))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    return rows


def _flat_record(row: ReplayRow, data: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": row.row_id, "seeker_id": row.seeker_id, "status": error or "scored"}
    if data is None:
        return record
    for mechanism, values in data["empathy"].items():
        record[f"{mechanism}_level"] = values["level"]
        record[f"{mechanism}_rationales"] = " | ".join(r["text"] for r in values["rationales"])
    record["seeker_risk_tier"] = data["seeker_risk"]["tier"]
    record["seeker_risk_labels"] = " ".join(data["seeker_risk"]["triggered_labels"])
    record["coaching_dm"] = data["coaching_dm"]
    record["escalation"] = data["escalation"]
    return record


async def replay_rows(
    client: InferenceClient, rows: Sequence[ReplayRow], *, progress: bool = True
) -> list[dict[str, Any]]:
    """Score every row (concurrently, so the backend can batch), in input order."""
    from tqdm import tqdm

    results: list[dict[str, Any] | None] = [None] * len(rows)
    semaphore = asyncio.Semaphore(REPLAY_CONCURRENCY)
    bar = tqdm(total=len(rows), unit="pair", disable=not progress, file=sys.stderr)

    async def one(index: int, row: ReplayRow) -> None:
        if not (has_scorable_text(row.seeker) and has_scorable_text(row.reply)):
            results[index] = {"row": row, "data": None, "error": "skipped: empty seeker or reply"}
        else:
            async with semaphore:
                try:
                    score = await _score_pair(client, row.seeker, row.reply, index)
                    results[index] = {"row": row, "data": result_json(score, row.reply), "error": None}
                except Exception as exc:  # one bad row must not lose the others
                    log.warning("replay row %s failed: %s", row.row_id, type(exc).__name__)
                    results[index] = {"row": row, "data": None, "error": f"failed: {type(exc).__name__}"}
        bar.update(1)

    try:
        await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
    finally:
        bar.close()
    return [r for r in results if r is not None]


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in results if r["data"] is not None]
    tiers: dict[str, str] = {}
    for r in scored:
        tiers.setdefault(
            r["row"].seeker_id, r["data"]["seeker_risk"]["tier"]
        )  # one seeker post, one escalation
    tier_counts = Counter(tiers.values())
    means = {
        m.value: round(sum(r["data"]["empathy"][m.value]["level"] for r in scored) / len(scored), 3)
        if scored
        else None
        for m in Mechanism
    }
    return {
        "pairs": len(results),
        "scored": len(scored),
        "skipped_or_failed": len(results) - len(scored),
        "coaching_dms": len(scored),
        "seeker_posts": len(tiers),
        "seeker_posts_by_tier": {tier.value: tier_counts.get(tier.value, 0) for tier in RiskTier},
        "escalations": tier_counts.get(RiskTier.HIGH.value, 0),
        "mean_levels": means,
    }


def write_results(results: Sequence[dict[str, Any]], summary: dict[str, Any], out: Path) -> None:
    records = [_flat_record(r["row"], r["data"], r["error"]) for r in results]
    if out.suffix.lower() == ".json":
        out.write_text(
            json.dumps({"summary": summary, "results": records}, ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
        return
    fields: list[str] = []
    for record in records:
        fields += [key for key in record if key not in fields]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


def print_summary(summary: dict[str, Any], out: Path, stream: TextIO) -> None:
    tiers = summary["seeker_posts_by_tier"]
    means = summary["mean_levels"]
    lines = [
        f"Pairs: {summary['pairs']} ({summary['scored']} scored, {summary['skipped_or_failed']} skipped or failed)",
        f"Mean levels: ER {means['ER']}  IP {means['IP']}  EX {means['EX']}",
        f"Coaching DMs: {summary['coaching_dms']} (one per scored reply if every responder opted in; "
        "the bot's interval and daily cap would turn some into digests)",
        f"Seeker posts: {summary['seeker_posts']} (high {tiers['high']}, elevated {tiers['elevated']}, "
        f"none {tiers['none']})",
        f"Escalations: {summary['escalations']} (one per high-risk seeker post; what each would do under the "
        "default consent settings is in the `escalation` column)",
        f"Results written to {out}",
    ]
    print("\n".join(lines), file=stream)


def _cmd_replay(args: argparse.Namespace) -> int:
    source = Path(args.csv)
    rows = read_pairs(source)
    if not rows:
        raise InputError(f"{source}: no rows under the header")
    out = Path(args.out) if args.out else source.with_name(source.stem + ".peercare.csv")
    if out.resolve() == source.resolve():
        raise InputError("--out must not overwrite the input file")

    async def work(client: InferenceClient) -> list[dict[str, Any]]:
        return await replay_rows(client, rows, progress=not args.no_progress)

    results = asyncio.run(_with_client(work))
    summary = summarise(results)
    write_results(results, summary, out)
    print_summary(summary, out, sys.stdout)
    return 0


# -- wiring ---------------------------------------------------------------------------------------------


def _quiet_model_loading() -> None:
    # The user asked for scores: transformers' "Loading weights" bars would bury them (ours stays: replay's).
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from bot.logging_setup import configure_logging
        from inference.errors import InferenceError

        configure_logging("WARNING")
        _quiet_model_loading()
        try:
            return command(args)
        except InputError as exc:
            print(f"peercare: error: {exc}", file=sys.stderr)
            return 2
        except InferenceError as exc:
            print(f"peercare: error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    score = subparsers.add_parser(
        "score",
        help="score one reply offline: empathy levels, the coaching DM, the seeker post's risk",
        description="Score a reply to a seeker post with the shipped models (offline, no Discord).",
    )
    score.add_argument("--seeker", required=True, help="the seeker's post (the message being replied to)")
    score.add_argument("--reply", required=True, help="the responder's reply")
    score.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    score.set_defaults(func=_guarded(_cmd_score))

    replay = subparsers.add_parser(
        "replay",
        help="score a CSV of seeker,reply pairs and summarise what PeerCare would have done",
        description="Score every (seeker, reply) row of a CSV offline; columns `seeker`, `reply`, "
        "optional `id`, `seeker_id`. Writes one result per row (CSV, or JSON when --out ends in .json).",
    )
    replay.add_argument("csv", help="input CSV with a header naming `seeker` and `reply`")
    replay.add_argument("--out", help="where to write the results (default: INPUT.peercare.csv)")
    replay.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    replay.set_defaults(func=_guarded(_cmd_replay))
