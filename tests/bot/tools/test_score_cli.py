"""`peercare score` and `peercare replay`: rendering, CSV handling and the summary."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from bot.tools import score_cli
from bot.tools.score_cli import (
    InputError,
    highlight,
    read_pairs,
    render_text,
    replay_rows,
    result_json,
    summarise,
)
from inference.types import Mechanism, ReplyScoreRequest, RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference

SEEKER = "I failed my exam again and I feel useless."
REPLY = "That sounds exhausting. What happened?"


@pytest.fixture
def scripted() -> ScriptedInference:
    inference = ScriptedInference()
    inference.rationale_words = {Mechanism.INTERPRETATIONS: "That sounds exhausting"}
    return inference


async def _score(inference: ScriptedInference):
    return await inference.score_reply(ReplyScoreRequest(1, SEEKER, 2, REPLY))


def test_highlight_uses_brackets_off_a_terminal() -> None:
    assert highlight(REPLY, [(0, 4), (5, 11)], ansi=False) == "[That] [sounds] exhausting. What happened?"


def test_highlight_uses_ansi_on_a_terminal() -> None:
    assert highlight(REPLY, [(0, 22)], ansi=True, colour="\033[1m") == (
        "\033[1mThat sounds exhausting\033[0m. What happened?"
    )


async def test_text_output_shows_levels_rationale_note_risk_and_escalation(
    scripted: ScriptedInference,
) -> None:
    scripted.tier = RiskTier.HIGH
    text = render_text(await _score(scripted), REPLY, ansi=False)
    assert "IP  Interpretations" in text and "strong (2)" in text
    assert "[That sounds exhausting]. What happened?" in text
    assert "“That sounds exhausting” shows you understood how they feel" in text
    assert "Seeker post risk tier: high" in text
    assert "Escalation" in text


async def test_json_output_is_one_object_with_every_part(scripted: ScriptedInference) -> None:
    data = json.loads(json.dumps(result_json(await _score(scripted), REPLY)))
    assert data["empathy"]["IP"]["rationales"] == [{"start": 0, "end": 22, "text": "That sounds exhausting"}]
    assert data["empathy"]["EX"]["level_name"] == "none"
    assert "open question" in data["coaching_dm"]
    assert data["seeker_risk"]["tier"] == "none"
    assert data["escalation"].startswith("No escalation")


def test_empty_reply_is_refused_before_loading_models(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    score_cli.register(parser.add_subparsers())
    args = parser.parse_args(["score", "--seeker", SEEKER, "--reply", " \u200b "])
    assert args.func(args) == 2
    assert (
        capsys.readouterr().err.strip()
        == "peercare: error: --reply is empty: give the text of the reply message"
    )


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_without_a_reply_column_is_refused(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "pairs.csv", [{"seeker": SEEKER, "answer": REPLY}])
    with pytest.raises(InputError, match="missing column"):
        read_pairs(path)


def test_csv_columns_are_case_insensitive_and_ids_optional(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "pairs.csv", [{"Seeker": SEEKER, "REPLY": REPLY}])
    (row,) = read_pairs(path)
    assert (row.row_id, row.seeker, row.reply) == ("1", SEEKER, REPLY)


async def test_replay_keeps_order_skips_empty_rows_and_counts_each_post_once(
    tmp_path: Path, scripted: ScriptedInference
) -> None:
    scripted.tier = RiskTier.HIGH
    path = _write_csv(
        tmp_path / "pairs.csv",
        [
            {"id": "a", "seeker_id": "p1", "seeker": SEEKER, "reply": REPLY},
            {"id": "b", "seeker_id": "p1", "seeker": SEEKER, "reply": "Same here."},
            {"id": "c", "seeker_id": "p2", "seeker": "Rough day.", "reply": ""},
        ],
    )
    results = await replay_rows(scripted, read_pairs(path), progress=False)
    summary = summarise(results)
    assert [r["row"].row_id for r in results] == ["a", "b", "c"]
    assert results[2]["error"] == "skipped: empty seeker or reply"
    assert summary["scored"] == 2 and summary["coaching_dms"] == 2
    assert summary["seeker_posts"] == 1 and summary["escalations"] == 1


async def test_replay_writes_csv_and_json_results(tmp_path: Path, scripted: ScriptedInference) -> None:
    path = _write_csv(tmp_path / "pairs.csv", [{"seeker": SEEKER, "reply": REPLY}])
    results = await replay_rows(scripted, read_pairs(path), progress=False)
    summary = summarise(results)
    score_cli.write_results(results, summary, tmp_path / "out.csv")
    score_cli.write_results(results, summary, tmp_path / "out.json")
    with (tmp_path / "out.csv").open(encoding="utf-8") as handle:
        (record,) = list(csv.DictReader(handle))
    assert record["IP_level"] == "2" and record["IP_rationales"] == "That sounds exhausting"
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert data["summary"]["pairs"] == 1 and data["results"][0]["status"] == "scored"
