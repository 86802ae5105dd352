"""Training the crisis head end to end on a tiny encoder and made-up rows: selection, refit, calibration."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference.risk import crisis_train as ct
from inference.risk.crisis import CRISIS_LABEL, CrisisHead, SentenceEncoder
from inference.risk.model_folder import read_calibration
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds, RiskTier
from tests.support.tiny_risk import build_tiny_pooled_risk_model, write_calibration, write_tiny_esconv

CRISIS = ["i want to die", "i will kill myself", "no one would miss me", "i want to end my life"]
CALM = ["hello", "thanks", "exam is killing me", "help me with my exam", "you are not alone", "call me"]


def _rows() -> list[ct.Row]:
    rows = []
    for copy in range(5):
        rows += [
            ct.Row(f"{text} {'!' * copy}", 1, f"p{i}-{copy}", "written", "crisis")
            for i, text in enumerate(CRISIS)
        ]
        rows += [
            ct.Row(f"{text} {'.' * copy}", 0, f"n{i}-{copy}", "written", "calm")
            for i, text in enumerate(CALM)
        ]
    rows += [ct.Row(f"ordinary turn {i}", 0, f"e{i % 12}", "esconv", "esconv") for i in range(60)]
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    folder = build_tiny_pooled_risk_model(tmp_path_factory.mktemp("risk") / "risk")
    base = folder / "base"
    return folder, AutoModel.from_pretrained(base).eval(), AutoTokenizer.from_pretrained(base)


def test_cross_validation_keeps_the_declared_false_alarm_limits(tiny, tmp_path):
    _, encoder, tokenizer = tiny
    cache = ct.EmbeddingCache(SentenceEncoder(encoder, tokenizer), tmp_path / "cache.npz")
    rows = _rows()
    run = ct.cross_validate(ct.Variant("A2"), rows, cache, seed=13)
    assert run["ordinary_high_rate"] <= ct.ORDINARY_LIMIT
    assert run["hard_negative_high_rate"] <= ct.HARD_NEGATIVE_LIMIT
    assert 0.0 <= run["recall"] <= 1.0
    # Cached: a second run encodes nothing new and gives the same out-of-fold logits.
    again = ct.cross_validate(ct.Variant("A2"), rows, cache, seed=13)
    np.testing.assert_allclose(run["oof_logits"], again["oof_logits"])


def test_choose_prefers_the_cheaper_variant_within_one_point():
    report = {"A2": {"recall_mean": 0.90}, "B": {"recall_mean": 0.905}, "C2": {"recall_mean": 0.95}}
    assert ct.choose(report) == "C2"
    report["C2"]["recall_mean"] = 0.909
    assert ct.choose(report) == "A2"


def test_tuned_head_saves_an_adapter_the_scorer_reads(tiny, tmp_path):
    folder, encoder, tokenizer = tiny
    recipe = ct.TunedRecipe(epochs=1, blocks=(0, 1), ordinary_per_epoch=10, batch_size=8)
    tuned, head = ct.fit_tuned(encoder, tokenizer, _rows(), seed=1, recipe=recipe)
    out = tmp_path / "model"
    import shutil

    shutil.copytree(folder, out)
    tuned.save_pretrained(out / "crisis_adapter")
    from dataclasses import replace

    CrisisHead(
        replace(head.config, base_model=str((out / "base").resolve()), adapter="crisis_adapter"), head.tensors
    ).save(out)
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    calibration = read_calibration(out)
    assert calibration is not None
    assert calibration.thresholds.high == {CRISIS_LABEL: 0.8}
    assert "suicidal" not in calibration.thresholds.elevated  # the crisis head replaced it
    scorer = RiskScorer.load(out)
    [result] = scorer.predict(["i want to die"])
    assert CRISIS_LABEL in result.probabilities
    assert result.tier in (RiskTier.NONE, RiskTier.ELEVATED, RiskTier.HIGH)
    assert json.loads((out / "crisis_head.json").read_text())["config"]["adapter"] == "crisis_adapter"


def test_esconv_halves_split_by_conversation(tmp_path):
    data = tmp_path / "data" / "esconv-dev"
    data.mkdir(parents=True)
    (data / "seeker_turns.csv").write_text(
        "conversation,turn,text\n0,0,hello\n1,0,hi\n2,3,ok\n181,6,made up crisis turn\n", encoding="utf-8"
    )
    train = ct.esconv_turns(Path(tmp_path / "data"), half="train")
    heldout = ct.esconv_turns(Path(tmp_path / "data"), half="heldout")
    assert {row.group for row in train} == {"e0", "e2"}
    assert {row.group for row in heldout} == {"e1", "e181"}
    assert [row.label for row in heldout if row.group == "e181"] == [1]


def test_supporter_replies_split_by_conversation_and_leave_out_the_excluded_ids(tmp_path, monkeypatch):
    data = tmp_path / "data" / "esconv-dev"
    data.mkdir(parents=True)
    (data / "pairs.csv").write_text(
        "conversation,turn,seeker,reply,strategy\n"
        "0,1,hi,Hello,Other\n0,3,sad,I am sorry to hear that,Other\n1,1,hey,Hi there,Other\n"
        "2,5,ok,,Other\n2,7,bye,Take care,Other\n",
        encoding="utf-8",
    )
    excluded = tmp_path / "excluded.csv"
    excluded.write_text("conversation,turn\n0,1\n", encoding="utf-8")
    monkeypatch.setattr(ct, "ESCONV_REPLY_EXCLUDED_FILE", excluded)
    train = ct.esconv_replies(tmp_path / "data", half="train")
    assert [(row.text, row.group, row.label) for row in train] == [
        ("I am sorry to hear that", "e0", 0),
        ("Take care", "e2", 0),
    ]
    assert [row.text for row in ct.esconv_replies(tmp_path / "data", half="heldout")] == ["Hi there"]


def test_selection_runs_every_declared_variant_and_ships_a_layered_winner(tiny, tmp_path, monkeypatch):
    folder, encoder, tokenizer = tiny
    monkeypatch.setattr(ct, "LAYERS", (0, 1, 2))  # the tiny encoder has two blocks, not six
    cache_for = ct.caches_for(encoder, tokenizer, tmp_path / "cache.npz")
    report = ct.run_selection(_rows(), cache_for, seeds=(13, 29))
    names = set(report["variants"])
    assert {"A0.5", "A2", "A8", "B", "E0.5", "E2", "E8"} <= names
    assert any(name.startswith("C") for name in names) and any(name.endswith("-aug") for name in names)
    assert any(name.startswith("F(") for name in names)
    assert report["winner"] == ct.choose(report["variants"])
    # The layered cache lives beside the plain one and holds three hidden states per text.
    assert (tmp_path / "cache-layers012.npz").exists()

    # Whatever won on these made-up rows, an E head must round-trip through the scorer unchanged.
    rows = _rows()
    cache = cache_for(ct.Variant("E2", layers=ct.LAYERS))
    head = ct.fit_final({"name": "E2", "c": 2.0, "layers": [0, 1, 2]}, rows, cache)
    assert head.tensors["weight"].shape == (3 * encoder.config.hidden_size,)
    import shutil

    out = tmp_path / "model"
    shutil.copytree(folder, out)
    from dataclasses import replace

    CrisisHead(replace(head.config, base_model=str((out / "base").resolve())), head.tensors).save(out)
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    scorer = RiskScorer.load(out)
    loaded, reader = scorer.crisis
    assert loaded.config.layers == (0, 1, 2) and reader.layers == (0, 1, 2)
    texts = ["i want to die", "hello"]
    expected = head.probabilities(ct.SentenceEncoder(encoder, tokenizer, layers=ct.LAYERS), texts)
    got = [result.probabilities[CRISIS_LABEL] for result in scorer.predict(texts)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_word_level_winner_ships_its_word_list_and_the_scorer_adds_its_logit(tiny, tmp_path):
    import shutil
    from dataclasses import replace

    folder, encoder, tokenizer = tiny
    rows = _rows()
    cache = ct.caches_for(encoder, tokenizer, tmp_path / "cache.npz")(ct.Variant("A8"))
    head = ct.fit_final({"name": "F(A8)", "c": 8.0, "lexical": True}, rows, cache)
    assert head.lexical is not None and head.config.lexical == ct.LEXICAL_FILE
    out = tmp_path / "model"
    shutil.copytree(folder, out)
    CrisisHead(
        replace(head.config, base_model=str((out / "base").resolve())), head.tensors, head.lexical
    ).save(out)
    assert (out / ct.LEXICAL_FILE).exists()
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    scorer = RiskScorer.load(out)
    loaded, _ = scorer.crisis
    assert loaded.lexical is not None
    texts = ["i want to die", "hello there"]
    plain = CrisisHead(head.config, head.tensors)  # the same embedding head without its words
    sentence = SentenceEncoder(encoder, tokenizer)
    embedding_logit = np.log(np.array(plain.probabilities(sentence, texts)))
    embedding_logit -= np.log1p(-np.exp(embedding_logit))
    words = head.lexical.logits([ct.reading(ct.normalise_chat(t)) for t in texts])[:, 0]
    expected = 1 / (1 + np.exp(-(embedding_logit + words)))
    got = [result.probabilities[CRISIS_LABEL] for result in scorer.predict(texts)]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert not np.allclose(words, 0.0)  # the word list really moves the score


def test_crisis_head_config_refuses_negative_layers():
    from inference.risk.crisis import CrisisHeadConfig, CrisisHeadError

    with pytest.raises(CrisisHeadError, match="layers"):
        CrisisHeadConfig(layers=(-1,))
    assert CrisisHeadConfig(layers=[2, 4]).layers == (2, 4)


def test_a_head_reading_layers_its_encoder_lacks_is_refused_at_load(tiny, tmp_path):
    import shutil

    from inference.errors import ModelLoadError
    from inference.risk.crisis import CrisisHeadConfig

    folder, encoder, _ = tiny
    out = tmp_path / "model"
    shutil.copytree(folder, out)
    width = 3 * encoder.config.hidden_size
    CrisisHead(
        CrisisHeadConfig(layers=(2, 4, 6), base_model=str((out / "base").resolve())),
        {"weight": np.zeros(width, np.float32), "bias": np.zeros(1, np.float32)},
    ).save(out)
    with pytest.raises(ModelLoadError, match="hidden state 6"):
        RiskScorer.load(out)


def test_elevated_cut_off_also_leaves_ordinary_chat_below_it():
    runs = [
        {"cut_off_logit": 2.0, "elevated_cut_off_logit": -3.0, "elevated_ordinary_cut_off_logit": -0.5},
        {"cut_off_logit": 2.2, "elevated_cut_off_logit": -2.8, "elevated_ordinary_cut_off_logit": -0.7},
    ]
    cut_offs = ct.cut_offs_from(runs)
    assert cut_offs["elevated"] == pytest.approx(1 / (1 + np.exp(0.6)), abs=1e-4)  # the ordinary-chat one
    older = [{k: v for k, v in run.items() if k != "elevated_ordinary_cut_off_logit"} for run in runs]
    assert ct.cut_offs_from(older)["elevated"] == pytest.approx(1 / (1 + np.exp(2.9)), abs=1e-4)
    assert ct.cut_offs_from(runs)["high"] == pytest.approx(1 / (1 + np.exp(-2.1)), abs=1e-4)


def test_contrastive_variant_replaces_the_frozen_winner_only_by_more_than_a_point():
    def report():
        return {
            "winner": "E8",
            "winner_spec": {"name": "E8"},
            "variants": {
                "E8": {
                    "recall_mean": 0.575,
                    "per_seed": [{"seed": 13, "recall": 0.52}, {"seed": 29, "recall": 0.63}],
                }
            },
        }

    assert ct.with_contrastive(report(), {"seed": 13, "recall": 0.529})["winner"] == "E8"
    # Beating the same seed is not enough (attempt 4's flaw): it must beat the mean over seeds too.
    assert ct.with_contrastive(report(), {"seed": 13, "recall": 0.58})["winner"] == "E8"
    chosen = ct.with_contrastive(report(), {"seed": 13, "recall": 0.59})
    assert chosen["winner"] == "G" and chosen["winner_spec"]["name"] == "G"
    assert chosen["variants"]["G"]["recall_mean"] == 0.59


@pytest.fixture
def model_copy(tiny, tmp_path, monkeypatch) -> tuple[Path, str]:
    """A copy of the tiny risk model to refit a crisis head into, and its base encoder's path, which the trainers'
    ``load_encoder`` (patched: no hub names here) loads by path."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    out = tmp_path / "model"
    shutil.copytree(tiny[0], out)
    monkeypatch.setattr(
        "inference.risk.features.load_encoder",
        lambda name: (AutoModel.from_pretrained(name).eval(), AutoTokenizer.from_pretrained(name)),
    )
    return out, str((out / "base").resolve())


def test_contrastive_head_saves_an_adapter_the_scorer_reads(tiny, model_copy):
    _, encoder, _ = tiny
    out, base = model_copy
    recipe = ct.ContrastiveRecipe(ordinary_per_fit=10, blocks=(0, 1), batch_pairs=8)
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    ct.train_contrastive_head(base, _rows(), out, seed=1, recipe=recipe)
    assert all(
        (encoder.state_dict()[name] == value).all() for name, value in before.items()
    )  # base untouched
    config = json.loads((out / "crisis_adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base  # as given, and no template card beside it
    assert not (out / "crisis_adapter" / "README.md").exists()
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    scorer = RiskScorer.load(out)
    head, reader = scorer.crisis
    assert head.config.adapter == "crisis_adapter" and reader.layers is None
    [result] = scorer.predict(["i want to die"])
    assert 0.0 <= result.probabilities[CRISIS_LABEL] <= 1.0


def test_the_short_turn_condition_raises_the_cut_off_only_for_the_attempt_that_declared_it() -> None:
    """Attempt 7: no ordinary turn of <= 3 words at high out-of-fold; earlier attempts did not ask it."""
    ordinary = [
        ct.Row(f"an ordinary turn of several words {i}", 0, f"e{i}", "esconv", "esconv") for i in range(240)
    ]
    rows = _rows() + ordinary + [ct.Row("goodbye", 0, "e999", "esconv", "esconv")]
    logits = np.array([3.0 if row.label else -3.0 for row in rows])
    logits[-1] = 2.0  # the short ordinary turn scores like a crisis; 1 ordinary turn in 301 is within 0.5 %
    assert ct.cut_off_for(logits, rows) <= 2.0
    assert ct.cut_off_for(logits, rows, short_limit=0.0) > 2.0
    assert ct.cut_off_for(logits, rows, short_limit=0.0) < 3.0  # the crises stay above it


def test_each_attempt_reads_its_own_pool() -> None:
    written = {attempt: set(attempt.written_files) for attempt in ct.ATTEMPTS.values()}
    assert ct.THIRD_WRITTEN_FILE not in written[ct.ATTEMPTS[5]]
    assert ct.FAREWELLS_FILE in written[ct.SHIPPED_ATTEMPT] and ct.SHIPPED_ATTEMPT.number == 28
    assert (
        ct.THIRD_WRITTEN_FILE in written[ct.ATTEMPTS[6]] and ct.THIRD_WRITTEN_FILE in written[ct.ATTEMPTS[7]]
    )
    assert ct.ATTEMPTS[7].short_ordinary_limit == 0.0 and ct.ATTEMPTS[6].short_ordinary_limit is None
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.supporter_replies] == [
        *range(11, 18),
        22,
        25,
        26,
        27,
        28,
    ]
    chat_rows = [n for n, attempt in ct.ATTEMPTS.items() if ct.CHAT_WRITTEN_FILE in attempt.written_files]
    assert chat_rows == [*range(12, 18), 22, 25, 26, 27, 28]
    # Attempt 13 is attempt 12's pool and rule with TH declared, nothing else.
    assert ct.ATTEMPTS[13] == replace(ct.ATTEMPTS[12], number=13, tuned_ensemble=True)
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.tuned_ensemble] == [13, 14, 15, 16, 28]
    # Attempt 14 is attempt 13's pool plus the decoys, with TH alone (no frozen variant cross-validated).
    assert ct.ATTEMPTS[14] == replace(
        ct.ATTEMPTS[13],
        number=14,
        written_files=(*ct.ATTEMPTS[13].written_files, ct.DECOYS_FILE),
        frozen_variants=False,
    )
    assert [n for n, attempt in ct.ATTEMPTS.items() if not attempt.frozen_variants] == [14, 15]
    # Attempt 15 is attempt 14's pool and variant; only the cut-off rule and what ships change.
    assert ct.ATTEMPTS[15] == replace(
        ct.ATTEMPTS[14], number=15, ordinary_by_speaker=True, ships_fold_model=True
    )
    # Attempt 16 is attempt 15 with the frozen variants back (under its rule) and the blends declared.
    assert ct.ATTEMPTS[16] == replace(
        ct.ATTEMPTS[15], number=16, frozen_variants=True, blend_weights=(0.3, 0.5, 0.7)
    )
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.blend_weights] == [16, 28]
    # Attempts 17, 22 and 25 are attempt 16's pool plus the fourth, the fifth, or the fifth and the sixth written
    # rows, frozen only.
    for number, added in (
        (17, (ct.FOURTH_WRITTEN_FILE,)),
        (22, (ct.FIFTH_WRITTEN_FILE,)),
        (25, (ct.FIFTH_WRITTEN_FILE, ct.SIXTH_WRITTEN_FILE)),
    ):
        assert ct.ATTEMPTS[number] == replace(
            ct.ATTEMPTS[16],
            number=number,
            written_files=(*ct.ATTEMPTS[16].written_files, *added),
            tuned_ensemble=False,
            blend_weights=(),
        )
    # Attempt 26 is attempt 16's pool, frozen only, plus the sixteen spent suites; no other attempt reads a suite.
    assert ct.ATTEMPTS[26] == replace(
        ct.ATTEMPTS[16], number=26, tuned_ensemble=False, blend_weights=(), spent_suites=ct.SPENT_SUITES
    )
    # Attempt 27 is attempt 26 with H also judged with 0.7 of its logit from the prototypes.
    assert ct.ATTEMPTS[27] == replace(ct.ATTEMPTS[26], number=27, prototype_shares=(0.5, 0.7))
    # Attempt 28 is attempt 27 with TH on its first seed only, blended with H0.7 at TH shares 0.2 and 0.3.
    assert ct.ATTEMPTS[28] == replace(
        ct.ATTEMPTS[27],
        number=28,
        tuned_ensemble=True,
        blend_weights=(0.2, 0.3),
        tuned_seeds=1,
        blend_partner_share=0.7,
    )
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.spent_suites] == [26, 27, 28]
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.prototype_shares != (0.5,)] == [27, 28]
    assert [n for n, attempt in ct.ATTEMPTS.items() if attempt.tuned_seeds is not None] == [28]


# Gates since the suites became training rows: 17-19 (attempt 26), 20-22 (attempt 27), 23-25 (attempt 28), 26-28
# (the next attempt's, scored by nothing yet).
LATER_GATE_SUITES = tuple(f"risk_suite_independent_{number}.csv" for number in range(17, 29))


def test_attempts_26_on_train_on_the_spent_suites_and_never_on_a_later_gate() -> None:
    """Suites 1-16 were each one attempt's gate and are training rows from attempt 26 on (crisis = expected high);
    suites 17-28 are later gates, so no row of them may be in that pool, read in place or reading the same."""
    spent = ct.SPENT_SUITES
    assert len(spent) == 16 and all(path.exists() for path in spent)
    assert {path.name for path in spent}.isdisjoint(LATER_GATE_SUITES)
    first = ct.spent_suite_rows(spent[0])
    with spent[0].open(encoding="utf-8") as handle:
        expected = [row["expected"] for row in csv.DictReader(handle)]
    assert [row.label for row in first] == [int(value == "high") for value in expected]
    assert {row.source for row in first} == {"written"} and len({row.group for row in first}) == len(first)
    pool = {ct.head_text(row.text) for path in spent for row in ct.spent_suite_rows(path)}
    assert len(pool) > 6000
    for name in LATER_GATE_SUITES:
        with (ct.SUITES_FOLDER / name).open(encoding="utf-8") as handle:
            gate = {ct.head_text(row["text"]) for row in csv.DictReader(handle)}
        # Counts only: a failure must not print a blind suite's texts.
        rows, overlap = len(gate), len(pool & gate)
        assert rows > 350, f"{name}: {rows} rows"
        assert overlap == 0, f"{overlap} rows of {name} read like training rows"


def test_the_rule_by_speaker_keeps_seeker_turns_to_their_own_share() -> None:
    """Attempt 15: pooled with 400 quiet supporter replies, 2 seeker turns in 200 at high pass the 0.5 % rule
    (2 of 600); counted on their own they are 1 %, so the cut-off must rise above them."""
    seekers = [ct.Row(f"a seeker turn {i}", 0, f"e{i}", "esconv", "esconv") for i in range(200)]
    replies = [ct.Row(f"a supporter reply {i}", 0, f"e{i}", "esconv", "esconv_reply") for i in range(400)]
    rows = _rows() + seekers + replies
    logits = np.array([3.0 if row.label else -3.0 for row in rows])
    first_seeker = len(_rows())
    logits[first_seeker : first_seeker + 2] = 2.0
    pooled = ct.cut_off_for(logits, rows)
    by_speaker = ct.cut_off_for(logits, rows, by_speaker=True)
    assert pooled <= 2.0 < by_speaker < 3.0
    result = ct.out_of_fold_result(13, logits, rows, by_speaker=True)
    assert result["seeker_turn_high_rate"] == 0.0 and result["recall"] == 1.0


def test_a_refit_replaces_the_calibration_s_crisis_method_instead_of_appending_it(tmp_path) -> None:
    write_calibration(tmp_path, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(tmp_path, {"high": 0.8, "elevated": 0.2}, "variant G")
    ct.write_crisis_calibration(tmp_path, {"high": 0.7, "elevated": 0.1}, "variant B")
    method = json.loads((tmp_path / "risk_calibration.json").read_text())["method"]
    assert method.count("crisis (decides high)") == 1 and method.endswith("variant B")


@pytest.fixture
def few_frozen_variants(monkeypatch) -> None:
    """The frozen selection cut to A8 (all but unfitted), B and E2 over the tiny encoder's three hidden states, so
    H is built from F(E2)."""
    monkeypatch.setattr(ct, "LAYERS", (0, 1, 2))
    monkeypatch.setattr(
        ct,
        "declared_variants",
        lambda best_c=None: [] if best_c else [ct.Variant("A8", c=1e-4), ct.Variant("B", kind="prototypes")],
    )
    monkeypatch.setattr(ct, "attempt3_variants", lambda: [ct.Variant("E2", c=2.0, layers=ct.LAYERS)])


def test_ensemble_h_is_the_mean_of_b_and_f_out_of_fold_logits(tiny, tmp_path, few_frozen_variants):
    _folder, encoder, tokenizer = tiny
    cache_for = ct.caches_for(encoder, tokenizer, tmp_path / "cache.npz")
    rows = _rows()
    report = ct.run_selection(rows, cache_for, seeds=(13,), ensemble=True)
    variants = report["variants"]
    # A8 is all but unfitted (C = 1e-4), so the word logit goes to the layered E2 and H is built from F(E2).
    assert variants["E2"]["recall_mean"] > variants["A8"]["recall_mean"]
    assert set(variants) == {"A8", "B", "E2", "F(E2)", "H(B+F(E2))"}

    # Recomputed by hand from the two members' out-of-fold logits for the same seed (hence the same folds).
    b_variant = ct.Variant("B", kind="prototypes")
    f_variant = ct.Variant("F(E2)", c=2.0, layers=ct.LAYERS, lexical=True)
    b = ct.cross_validate(b_variant, rows, cache_for(b_variant), 13)
    f = ct.cross_validate(f_variant, rows, cache_for(f_variant), 13)
    expected = ct.out_of_fold_result(13, (b["oof_logits"] + f["oof_logits"]) / 2, rows)
    (got,) = variants["H(B+F(E2))"]["per_seed"]
    assert got["recall"] == pytest.approx(expected["recall"])
    assert got["cut_off_logit"] == pytest.approx(expected["cut_off_logit"])
    # Without the flag (attempts 1-9) there is no H.
    assert "H(B+F(E2))" not in ct.run_selection(rows, cache_for, seeds=(13,))["variants"]
    # Attempt 27: H also with 0.7 of its logit from the prototypes, judged by the same rule.
    shares = ct.run_selection(rows, cache_for, seeds=(13,), ensemble=True, prototype_shares=(0.5, 0.7))
    assert {"H(B+F(E2))", "H0.7(B+F(E2))"} <= set(shares["variants"])
    heavier = ct.out_of_fold_result(13, 0.7 * b["oof_logits"] + 0.3 * f["oof_logits"], rows)
    (got,) = shares["variants"]["H0.7(B+F(E2))"]["per_seed"]
    assert got["cut_off_logit"] == pytest.approx(heavier["cut_off_logit"])
    assert got["recall"] == pytest.approx(heavier["recall"])


@pytest.mark.parametrize("share", [0.5, 0.7])
def test_an_ensemble_head_ships_and_the_scorer_mixes_its_two_halves(tiny, tmp_path, monkeypatch, share):
    """H mixes F's logit and B's by its prototype share (0.5: the mean, as H was declared; attempt 27: 0.7)."""
    import shutil
    from dataclasses import replace

    folder, encoder, tokenizer = tiny
    monkeypatch.setattr(ct, "LAYERS", (0, 1, 2))
    rows = _rows()
    cache_for = ct.caches_for(encoder, tokenizer, tmp_path / "cache.npz")
    layers = [0, 1, 2]
    spec = {
        "name": "H(B+F(E2))",
        "kind": "ensemble",
        "c": 2.0,
        "layers": layers,
        "lexical": True,
        "prototype_share": share,
    }
    head = ct.fit_final(spec, rows, cache_for(ct.Variant("E2", layers=(0, 1, 2))))
    assert head.config.kind == "ensemble" and head.lexical is not None
    assert head.config.prototype_share == share
    hidden = encoder.config.hidden_size
    assert head.tensors["positive"].shape[1] == hidden  # the prototypes read the last layer's block only
    out = tmp_path / "model"
    shutil.copytree(folder, out)
    CrisisHead(
        replace(head.config, base_model=str((out / "base").resolve())), head.tensors, head.lexical
    ).save(out)
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    scorer = RiskScorer.load(out)
    texts = ["i want to die", "hello there"]
    got = np.array([result.probabilities[CRISIS_LABEL] for result in scorer.predict(texts)])

    # By hand: F's logit (regression over the three blocks plus words) and B's (prototypes over the last block).
    layered = SentenceEncoder(encoder, tokenizer, layers=(0, 1, 2)).embed(texts)
    regression = layered @ head.tensors["weight"] + head.tensors["bias"][0]
    words = head.lexical.logits([ct.reading(ct.normalise_chat(t)) for t in texts])[:, 0]
    last = layered[:, -hidden:]
    k = head.config.neighbours
    margin = np.sort(last @ head.tensors["positive"].T, axis=1)[:, -k:].mean(1) - np.sort(
        last @ head.tensors["negative"].T, axis=1
    )[:, -k:].mean(1)
    scale, shift = head.tensors["platt"]
    expected = 1 / (1 + np.exp(-((1 - share) * (regression + words) + share * (scale * margin + shift))))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_an_ensemble_head_without_layers_is_refused():
    from inference.risk.crisis import CrisisHeadConfig, CrisisHeadError

    with pytest.raises(CrisisHeadError, match="ensemble crisis head needs layers"):
        CrisisHeadConfig(kind="ensemble")


@pytest.mark.parametrize("share", [0.0, 1.0, -0.2, 1.5])
def test_a_prototype_share_outside_zero_and_one_is_refused(share: float) -> None:
    from inference.risk.crisis import CrisisHeadConfig, CrisisHeadError

    with pytest.raises(CrisisHeadError, match="prototype_share must be between 0 and 1"):
        CrisisHeadConfig(kind="ensemble", layers=(2, 4, 6), prototype_share=share)


def test_ordinary_chat_evaluation_reads_the_supporters_replies_when_asked(tiny, tmp_path):
    from inference.risk.chat_eval import evaluate_ordinary_chat

    folder, _encoder, _tokenizer = tiny
    write_tiny_esconv(
        tmp_path / "data",
        "conversation,turn,text\n1,0,hi\n1,2,i feel low\n",
        "conversation,turn,seeker,reply,strategy\n1,1,hi,Hello,Other\n1,3,i feel low,That sounds hard,Other\n"
        "1,5,x,Have you talked to someone about it?,Question\n",
    )
    import shutil

    model = tmp_path / "model"
    shutil.copytree(folder, model)
    write_calibration(model, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    scorer = RiskScorer.load(model)
    seekers = evaluate_ordinary_chat(scorer, tmp_path / "data", "heldout")
    replies = evaluate_ordinary_chat(scorer, tmp_path / "data", "heldout", replies=True)
    assert (seekers["speaker"], seekers["n"], seekers["n_short"]) == ("seeker", 2, 2)
    assert (replies["speaker"], replies["n"], replies["n_short"]) == ("supporter", 3, 2)


# Suites 1 and 2 were written before the rule that drops new rows reading the same as a held-out text, and share
# these many rows with the pool (mostly greetings such as "ok" or "brb"; 5 crises each, recorded in the protocol).
# Suites 3 to 9 were deduplicated against the pool when they came back. No new training row may add to either.
SUITE_ROWS_IN_POOL = {
    "risk_suite_independent.csv": 18,
    "risk_suite_independent_2.csv": 28,
    "risk_suite_independent_3.csv": 0,
    "risk_suite_independent_4.csv": 0,
    "risk_suite_independent_5.csv": 0,
    "risk_suite_independent_6.csv": 0,
    "risk_suite_independent_7.csv": 0,
    "risk_suite_independent_8.csv": 0,
    "risk_suite_independent_9.csv": 0,
    "risk_suite_independent_10.csv": 0,
    "risk_suite_independent_11.csv": 0,
    "risk_suite_independent_12.csv": 0,
    "risk_suite_independent_13.csv": 0,
    "risk_suite_independent_14.csv": 0,
    "risk_suite_independent_15.csv": 0,
    "risk_suite_independent_16.csv": 0,
    # Written for the next gate (session 12): three suites pooled, so a gain of about 0.03 in recall can show.
    "risk_suite_independent_17.csv": 0,
    "risk_suite_independent_18.csv": 0,
    "risk_suite_independent_19.csv": 0,
    # Attempt 27's gate, pooled (session 12, after attempt 26 spent 17-19).
    "risk_suite_independent_20.csv": 0,
    "risk_suite_independent_21.csv": 0,
    "risk_suite_independent_22.csv": 0,
    # Written for the next attempt's pooled gate (session 12, end); scored by nothing yet.
    "risk_suite_independent_23.csv": 0,
    "risk_suite_independent_24.csv": 0,
    "risk_suite_independent_25.csv": 0,
    # Written for the gate after that one (session 13, start); scored by nothing yet.
    "risk_suite_independent_26.csv": 0,
    "risk_suite_independent_27.csv": 0,
    "risk_suite_independent_28.csv": 0,
    "risk_quotes_independent.csv": 0,  # messages with Discord block quotes (attempt 21)
    "risk_double_quotes_independent.csv": 0,  # double quotes; seen before a declaration, a development set
    "risk_tiredness_independent.csv": 0,  # ordinary tiredness and dread, every row not_high (after attempt 16)
}


@pytest.mark.parametrize("name", sorted(SUITE_ROWS_IN_POOL))
def test_no_training_row_reads_like_a_held_out_suite_row(name: str) -> None:
    """The independent suites are never trained on: every attempt's written rows are checked against them."""
    written = {path for attempt in ct.ATTEMPTS.values() for path in attempt.written_files} | {
        ct.CHAT_STYLE_FILE
    }
    pool = {
        ct.head_text(row["text"]) for path in written for row in csv.DictReader(path.open(encoding="utf-8"))
    }
    suite = Path(__file__).resolve().parents[2] / "data" / name
    rows = list(csv.DictReader(suite.open(encoding="utf-8")))
    assert len(rows) > 100
    assert sum(ct.head_text(row["text"]) in pool for row in rows) == SUITE_ROWS_IN_POOL[name]


@pytest.fixture
def tiny_tuned_ensemble(monkeypatch):
    """Attempt 13's TH, sized for the tiny model: its three blocks, one short epoch."""
    from dataclasses import replace

    monkeypatch.setattr(ct, "TUNED_ENSEMBLE", replace(ct.TUNED_ENSEMBLE, layers=(0, 1, 2)))
    monkeypatch.setattr(
        ct, "TUNED_ENSEMBLE_RECIPE", replace(ct.TUNED_ENSEMBLE_RECIPE, blocks=(0, 1), epochs=1, batch_size=8)
    )


def test_tuned_ensemble_is_judged_out_of_fold_and_must_beat_the_frozen_winner_by_a_point(
    tiny, tiny_tuned_ensemble
) -> None:
    _folder, encoder, tokenizer = tiny
    rows = _rows()
    run = ct.cross_validate_tuned_ensemble(encoder, tokenizer, rows, seed=13)
    assert np.isfinite(run["oof_logits"]).all() and len(run["oof_logits"]) == len(rows)
    assert run["hard_negative_high_rate"] <= ct.HARD_NEGATIVE_LIMIT
    frozen = {"variants": {"H(B+F(E8))": {"recall_mean": 0.874}}, "winner": "H(B+F(E8))"}
    close = ct.with_tuned_ensemble(frozen, [{**run, "recall": 0.88}])
    assert close["winner"] == "H(B+F(E8))" and close["variants"]["TH"]["recall_mean"] == 0.88
    better = ct.with_tuned_ensemble(frozen, [{**run, "recall": 0.89}])
    assert better["winner"] == "TH" and better["winner_spec"]["kind"] == "ensemble"


def test_tuned_ensemble_ships_its_adapter_and_the_scorer_reads_through_it(
    tiny, tiny_tuned_ensemble, model_copy
) -> None:
    _, encoder, tokenizer = tiny
    out, base = model_copy
    ct.train_tuned_ensemble_head(base, _rows(), out, seed=1)
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    scorer = RiskScorer.load(out)
    head, reader = scorer.crisis
    assert head.config.kind == "ensemble" and head.config.adapter == "crisis_adapter"
    assert reader.layers == (0, 1, 2) and head.lexical is not None
    texts = ["i want to die", "hello there"]
    got = [result.probabilities[CRISIS_LABEL] for result in scorer.predict(texts)]
    # The same head over the frozen encoder reads other embeddings: the adapter is what the scorer reads through.
    frozen = head.probabilities(SentenceEncoder(encoder, tokenizer, layers=(0, 1, 2)), texts)
    assert not np.allclose(got, frozen, atol=1e-4)
    assert np.allclose(got, head.probabilities(reader, texts), atol=1e-6)


def _train_tuned_attempt(
    number: int,
    out: Path,
    base,
    tmp_path: Path,
    selection: Path | None = None,
    seeds: tuple[int, ...] = (13,),
) -> dict:
    """``train_crisis`` for a TH attempt on the tiny model, one seed unless told (the pool is patched by the
    caller); with ``selection``, only what ships is fitted, from that recorded selection."""
    return ct.train_crisis(
        output=out,
        data_dir=tmp_path,
        base_model=base,
        seeds=seeds,
        selection_path=selection,
        cache_path=tmp_path / "cache.npz",
        attempt=ct.ATTEMPTS[number],
    )


def test_an_attempt_that_declared_th_alone_cross_validates_only_th_and_ships_it(
    tiny, tiny_tuned_ensemble, model_copy, tmp_path, monkeypatch
) -> None:
    """Attempt 14 declared one variant: no frozen variant is run, so none can win instead of TH."""
    out, base = model_copy
    monkeypatch.setattr(ct, "training_pool", lambda data_dir, attempt: _rows())
    report = _train_tuned_attempt(14, out, base, tmp_path)
    assert set(report["variants"]) == {"TH"} and report["winner"] == "TH"
    assert (out / "crisis_adapter").is_dir()
    assert "attempt 14" in json.loads((out / "risk_calibration.json").read_text())["method"]


def test_an_attempt_that_ships_a_fold_model_ships_the_cross_validation_s_own_model(
    tiny, tiny_tuned_ensemble, model_copy, tmp_path, monkeypatch
) -> None:
    """Attempt 15: no refit. The shipped head reads fold 0's held-out rows exactly as the cross-validation did,
    so the cut-off measured on the out-of-fold logits is measured on the model that ships."""
    _, encoder, tokenizer = tiny
    out, base = model_copy
    rows = _rows()
    monkeypatch.setattr(ct, "training_pool", lambda data_dir, attempt: rows)
    _train_tuned_attempt(15, out, base, tmp_path)
    method = json.loads((out / "risk_calibration.json").read_text())["method"]
    assert "attempt 15" in method and "fold 0, no refit" in method and "supporter replies each" in method
    oof = ct.cross_validate_tuned_ensemble(encoder, tokenizer, rows, 13, by_speaker=True)["oof_logits"]
    _, held_out = ct.tuning_folds(rows, 13)[ct.SHIPPED_FOLD]
    head, reader = RiskScorer.load(out).crisis
    shipped = head.message_logits(reader, [rows[i].text for i in held_out])
    assert np.allclose(shipped, oof[held_out], atol=1e-3)
    # A refit on every row would read them otherwise (it trained on them).
    _, refit_reader, refit_head = ct.tuned_ensemble_head(encoder, tokenizer, rows, 13)
    refit = refit_head.message_logits(refit_reader, [rows[i].text for i in held_out])
    assert not np.allclose(refit, oof[held_out], atol=1e-3)


def test_a_blend_ships_the_fold_models_whose_out_of_fold_logits_it_blended(
    tiny, tiny_tuned_ensemble, few_frozen_variants, model_copy, tmp_path, monkeypatch
) -> None:
    """Attempt 16: the frozen variants run under the by-speaker rule beside TH and its blends; a blend that wins
    ships TH's and the frozen H's fold-0 models, and reads fold 0's held-out rows exactly as the cross-validation's
    w x TH + (1 - w) x H out-of-fold logit did."""
    out, base = model_copy
    rows = _rows()
    monkeypatch.setattr(ct, "training_pool", lambda data_dir, attempt: rows)
    report = _train_tuned_attempt(16, out, base, tmp_path)
    assert {"B", "H(B+F(E2))", "TH", "M0.3", "M0.5", "M0.7"} <= set(report["variants"])
    assert report["ensemble_spec"]["name"] == "H(B+F(E2))"

    # Whichever won on these toy rows, the selection can name the blend; rebuilding from it ships the blend.
    selection = tmp_path / "selection.json"
    ct.write_report(selection, {**report, "winner": "M0.3", "winner_spec": {"blend_weight": 0.3}})
    _train_tuned_attempt(16, out, base, tmp_path, selection)
    head, reader = RiskScorer.load(out).crisis
    assert head.config.blend == ct.BLEND_FOLDER and head.config.blend_weight == 0.3
    assert head.config.adapter == "crisis_adapter" and head.partner is not None
    assert head.partner.config.adapter is None and head.partner.config.kind == "ensemble"
    assert (
        "blended with the frozen H(B+F(E2))"
        in json.loads((out / "risk_calibration.json").read_text())["method"]
    )
    oof = np.load(tmp_path / "oof-attempt16.npz")
    blended = 0.3 * oof["TH/13"] + 0.7 * oof["H(B+F(E2))/13"]
    _, held_out = ct.tuning_folds(rows, 13)[ct.SHIPPED_FOLD]
    shipped = head.message_logits(reader, [rows[i].text for i in held_out])
    np.testing.assert_allclose(shipped, blended[held_out], atol=1e-3)
    # Without its frozen half the shipped head would read them otherwise.
    alone = replace(head, partner=None).message_logits(reader, [rows[i].text for i in held_out])
    assert not np.allclose(alone, blended[held_out], atol=1e-3)


def test_attempt_28_tunes_its_first_seed_only_and_blends_th_with_the_h_of_its_declared_share(
    tiny, tiny_tuned_ensemble, few_frozen_variants, model_copy, tmp_path, monkeypatch
) -> None:
    """Attempt 28: TH for the first seed alone (the frozen variants keep every seed), its blends mixed with H0.7's
    out-of-fold logit of that seed, and the shipped blend's frozen half is H0.7's fold-0 model."""
    out, base = model_copy
    rows = _rows()
    monkeypatch.setattr(ct, "training_pool", lambda data_dir, attempt: rows)
    report = _train_tuned_attempt(28, out, base, tmp_path, seeds=(13, 29))
    variants = report["variants"]
    assert [run["seed"] for run in variants["TH"]["per_seed"]] == [13]
    assert [run["seed"] for run in variants["M0.2"]["per_seed"]] == [13]
    assert [run["seed"] for run in variants["H0.7(B+F(E2))"]["per_seed"]] == [13, 29]
    assert report["ensemble_spec"]["name"] == "H0.7(B+F(E2))"
    oof = np.load(tmp_path / "oof-attempt28.npz")
    assert "TH/29" not in oof
    blended = 0.2 * oof["TH/13"] + 0.8 * oof["H0.7(B+F(E2))/13"]
    assert (
        variants["M0.2"]["per_seed"][0]["recall"]
        == ct.out_of_fold_result(13, blended, rows, 0.0, True)["recall"]
    )

    selection = tmp_path / "selection.json"
    ct.write_report(selection, {**report, "winner": "M0.2", "winner_spec": {"blend_weight": 0.2}})
    _train_tuned_attempt(28, out, base, tmp_path, selection, seeds=(13, 29))
    head, reader = RiskScorer.load(out).crisis
    assert head.config.blend_weight == 0.2 and head.partner.config.prototype_share == 0.7
    _, held_out = ct.tuning_folds(rows, 13)[ct.SHIPPED_FOLD]
    shipped = head.message_logits(reader, [rows[i].text for i in held_out])
    np.testing.assert_allclose(shipped, blended[held_out], atol=1e-3)


def test_a_blended_head_names_a_partner_it_can_read(tiny, tmp_path) -> None:
    from inference.risk.crisis import CrisisHeadConfig, CrisisHeadError

    with pytest.raises(CrisisHeadError, match="blend_weight between 0 and 1"):
        CrisisHeadConfig(blend="crisis_frozen", blend_weight=1.0)
    tensors = {"weight": np.ones(8, np.float32), "bias": np.zeros(1, np.float32)}
    config = CrisisHeadConfig(blend="crisis_frozen", blend_weight=0.5)
    CrisisHead(config, tensors).save(tmp_path)
    with pytest.raises(CrisisHeadError, match="holds no crisis head"):
        CrisisHead.load(tmp_path)
    tuned_partner = CrisisHead(CrisisHeadConfig(adapter="crisis_adapter"), tensors)
    CrisisHead(config, tensors, partner=tuned_partner).save(tmp_path)
    with pytest.raises(CrisisHeadError, match="reads the frozen encoder"):
        CrisisHead.load(tmp_path)
    plain_partner = CrisisHead(CrisisHeadConfig(), tensors)
    CrisisHead(config, tensors, partner=plain_partner).save(tmp_path)
    loaded = CrisisHead.load(tmp_path)
    assert loaded is not None and loaded.partner is not None

    class Ones:
        def embed(self, texts):
            return np.ones((len(texts), 8), np.float32)

    with pytest.raises(CrisisHeadError, match="before its partner's reader was attached"):
        loaded.message_logits(Ones(), ["a message"])
    # Each head's logit is 8 (eight ones against eight ones); half of each.
    assert loaded.reading_partner_with(Ones()).message_logits(Ones(), ["a message"]).tolist() == [8.0]


def test_ordinary_chat_judged_as_bursts_counts_conversations_with_a_turn_at_high(tiny, tmp_path):
    from inference.risk.chat_eval import evaluate_ordinary_chat

    folder, _encoder, _tokenizer = tiny
    write_tiny_esconv(tmp_path / "data", "conversation,turn,text\n1,0,hi\n1,2,i feel low\n3,0,ok\n")
    import shutil

    model = tmp_path / "model"
    shutil.copytree(folder, model)
    # Every text is at high under this threshold: each of the two conversations has a turn at high.
    write_calibration(model, RiskThresholds(elevated={"suicidal": 0.0}, high={"suicidal": 0.0}))
    scorer = RiskScorer.load(model)
    alone = evaluate_ordinary_chat(scorer, tmp_path / "data", "heldout")
    bursts = evaluate_ordinary_chat(scorer, tmp_path / "data", "heldout", bursts=True)
    assert (alone["judged"], bursts["judged"]) == ("alone", "as bursts")
    assert bursts["n"] == alone["n"] == 3 and bursts["ordinary_high_rate"] == 1.0
    assert bursts["ordinary_conversations_with_high"] == "2/2"


def test_a_spent_suite_with_a_mistyped_expected_value_is_refused_with_its_line(tmp_path) -> None:
    """A typo in ``expected`` must not turn a crisis into a training negative without a word."""
    from inference.risk.evaluate import EvaluationError

    suite = tmp_path / "suite.csv"
    suite.write_text(
        "id,category,expected,text\ns-1,active_ideation,high,a crisis\ns-2,active_ideation,hihg,another\n",
        encoding="utf-8",
    )
    with pytest.raises(EvaluationError, match=r"suite.csv:3: expected must be high or not_high"):
        ct.spent_suite_rows(suite)
