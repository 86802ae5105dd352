"""`peercare score` and `peercare replay`: rendering, CSV handling and the summary."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
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
from inference.types import Mechanism, ReplyScoreRequest, RiskResult, RiskTier
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
    assert "Escalation under the default consent settings: Member asked first" in text


async def test_json_output_is_one_object_with_every_part(scripted: ScriptedInference) -> None:
    data = json.loads(json.dumps(result_json(await _score(scripted), REPLY)))
    assert data["empathy"]["IP"]["rationales"] == [{"start": 0, "end": 22, "text": "That sounds exhausting"}]
    assert data["empathy"]["EX"]["level_name"] == "none"
    assert "open question" in data["coaching_dm"]
    assert data["seeker_risk"]["tier"] == "none"
    assert data["escalation"].startswith("No escalation")  # tier none


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


# -- the real command, as a user runs it, on tiny models ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from tests.support.tiny_empathy import build_tiny_empathy_models
    from tests.support.tiny_risk import build_tiny_risk_model

    folder = tmp_path_factory.mktemp("models")
    empathy = build_tiny_empathy_models(folder, force_levels={"ER": 2, "IP": 1, "EX": 0}, all_rationale=True)
    risk = build_tiny_risk_model(folder / "risk", low_risk=True)
    return {
        "EMPATHY_ER_MODEL": str(empathy[Mechanism.EMOTIONAL_REACTIONS]),
        "EMPATHY_IP_MODEL": str(empathy[Mechanism.INTERPRETATIONS]),
        "EMPATHY_EX_MODEL": str(empathy[Mechanism.EXPLORATIONS]),
        "RISK_MODEL": str(risk),
    }


def _peercare(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("EMPATHY_", "RISK_", "INFERENCE_"))
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_score_json_runs_offline_on_the_configured_models(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    result = _peercare(
        ["score", "--seeker", "I want to kill myself, nothing helps.", "--reply", REPLY, "--json"],
        tiny_models,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert [data["empathy"][m]["level"] for m in ("ER", "IP", "EX")] == [2, 1, 0]
    assert data["empathy"]["ER"]["rationales"], "all_rationale marks reply tokens"
    assert "a strong Emotional Reaction" in data["coaching_dm"] and "open question" in data["coaching_dm"]
    assert data["seeker_risk"]["tier"] == "high"  # the crisis-phrase layer, not the (low) model output
    assert "asked" in data["escalation"].lower()
    assert "kill myself" not in result.stderr


def test_replay_writes_results_and_prints_the_summary(tiny_models: dict[str, str], tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "history.csv",
        [
            {"id": "1", "seeker": "Exams are killing me.", "reply": REPLY},
            {
                "id": "2",
                "seeker": "I feel so alone lately.",
                "reply": "You are not alone. What has been hardest?",
            },
        ],
    )
    result = _peercare(["replay", str(path), "--out", str(tmp_path / "out.json")], tiny_models, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Coaching DMs: 2" in result.stdout and "Escalations: 0" in result.stdout
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in data["results"]] == ["1", "2"]
    assert "pair" in result.stderr  # the progress bar


async def test_text_output_says_why_a_greeting_shows_no_mechanism(scripted: ScriptedInference) -> None:
    score = await _score(scripted)
    assert score_cli.PHATIC_NOTE in render_text(score, "hey there!!", ansi=False)
    assert score_cli.PHATIC_NOTE not in render_text(score, REPLY, ansi=False)
    assert (
        result_json(score, "ok thx")["reply_is_phatic"] and not result_json(score, REPLY)["reply_is_phatic"]
    )


async def test_text_output_says_why_a_bare_same_shows_nothing_above_weak(scripted: ScriptedInference) -> None:
    score = await _score(scripted)
    assert score_cli.BARE_ECHO_NOTE in render_text(score, "lol same", ansi=False)
    assert score_cli.BARE_ECHO_NOTE not in render_text(score, REPLY, ansi=False)
    assert score_cli.BARE_ECHO_NOTE not in render_text(score, "ok thx", ansi=False)  # phatic: its own note
    assert (
        result_json(score, "me too!!")["reply_is_bare_echo"]
        and not result_json(score, REPLY)["reply_is_bare_echo"]
    )


async def test_a_reply_at_high_risk_shows_its_own_tier_and_no_coaching_note(
    scripted: ScriptedInference,
) -> None:
    """Issue 13: the reply is judged as its author's own message, as the bot judges it; at high, the bot sends no
    note praising its empathy, so the CLI shows none either and says why."""
    await score_cli._score_pair(scripted, SEEKER, REPLY)
    assert scripted.reply_calls[-1].score_reply_risk
    crisis = RiskResult(probabilities={"crisis": 0.97}, tier=RiskTier.HIGH)
    score = replace(await _score(scripted), reply_risk=crisis)
    text = render_text(score, REPLY, ansi=False)
    assert "No coaching note" in text and "shows you understood" not in text
    assert "Reply's own risk tier: high" in text and "Seeker post risk tier: none" in text
    data = result_json(score, REPLY)
    assert data["coaching_dm"] is None and data["reply_risk"]["tier"] == "high"
    calm = result_json(replace(score, reply_risk=RiskResult(probabilities={}, tier=RiskTier.NONE)), REPLY)
    assert "open question" in calm["coaching_dm"] and calm["coaching_withheld"] is None
