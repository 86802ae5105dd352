"""Train, select and save the crisis head by the protocol in docs/models/risk-crisis-protocol.md.

``peercare train crisis`` runs every declared variant over 3 seeds of 5-fold cross-validation on the training
pool, picks the winner by the declared rule only, refits it on the whole pool and writes it (config, weights,
the cut-offs and the full variant report) into a risk model folder. Sentence embeddings are cached per text
under ``runs/risk/crisis-cache`` so variants and seeds share one encoding pass.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference import contrastive
from inference.contrastive import LoraShape, lora_copy
from inference.risk.chat_eval import EXPECTED, SHORT_WORDS
from inference.risk.chat_text import chunks, head_text, normalise_chat, reading
from inference.risk.crisis import (
    CrisisHead,
    CrisisHeadConfig,
    SentenceEncoder,
    last_layer_block,
)
from inference.risk.evaluate import EvaluationError

log = logging.getLogger(__name__)

DATA_FOLDER = Path(__file__).resolve().parent / "data"
WRITTEN_FILE = DATA_FOLDER / "crisis_train.csv"
# Attempt 5: more rows in chat style, written from the definitions by another session (same columns).
MORE_WRITTEN_FILE = DATA_FOLDER / "crisis_train_more.csv"
# Attempt 6: 760 more rows from the definitions by a third session, with heavy venting as a new negative.
THIRD_WRITTEN_FILE = DATA_FOLDER / "crisis_train_third.csv"
# Attempt 8: ordinary farewells and other 1-3-word messages, all negatives, by a fourth session.
FAREWELLS_FILE = DATA_FOLDER / "crisis_train_farewells.csv"
# Attempt 9: figurative death and violence words ("dying to know", "bored to death"), all negatives.
HYPERBOLE_FILE = DATA_FOLDER / "crisis_train_hyperbole.csv"
# Attempt 10: short chat turns, short distress and short crises, written by a session that opened no file.
SHORT_FILE = DATA_FOLDER / "crisis_train_short.csv"
# Attempt 12: crises and death-word hyperbole in Discord chat style, by a session that opened no file.
CHAT_WRITTEN_FILE = DATA_FOLDER / "crisis_train_chat.csv"
# Attempt 14: ordinary chat in crisis words ("just woke up", "one last game"), short turns, and chat-style plans,
# preparatory acts and method questions, by a session that opened no file.
DECOYS_FILE = DATA_FOLDER / "crisis_train_decoys.csv"
FOURTH_WRITTEN_FILE = DATA_FOLDER / "crisis_train_fourth.csv"  # attempt 17: 8 x 40 crises, 120 look-alikes
# Attempt 22: indirect plans, farewell acts, passive wishes and burdensomeness (200) and their ordinary look-alikes (100).
FIFTH_WRITTEN_FILE = DATA_FOLDER / "crisis_train_fifth.csv"
# Attempt 25: ordinary chat lines that read like a crisis out of context (leaving the chat, asking the other's story,
# ordinary wishes, blame, belongings, endings, safety, metaphors, tiredness, medicine), 300, all negatives.
SIXTH_WRITTEN_FILE = DATA_FOLDER / "crisis_train_sixth.csv"
CHAT_STYLE_FILE = DATA_FOLDER / "chat_style_training.csv"
ESCONV_LABELS_FILE = DATA_FOLDER / "esconv_dev_crisis_labels.csv"
# Even-conversation supporter replies whose normalised text is also a held-out text (a suite's, or an odd
# conversation's turn or reply: mostly "Hello"): ids only, left out of attempt 11's pool.
ESCONV_REPLY_EXCLUDED_FILE = DATA_FOLDER / "esconv_reply_excluded.csv"
SEEDS = (13, 29, 47)
LEXICAL_FILE = "crisis_lexical.json"
FOLDS = 5
ORDINARY_LIMIT = 0.005
HARD_NEGATIVE_LIMIT = 0.03
ELEVATED_RECALL = 0.99
# Amendment of 2026-12-06 (see the protocol): recall 0.99 alone put 16 % of ordinary ESConv turns at elevated
# ("ok thx" among them); elevated must also leave at least 95 % of ordinary out-of-fold turns below it.
ELEVATED_ORDINARY_LIMIT = 0.05
# Attempt 15 ships this fold's model of the first seed instead of a refit on the whole pool.
SHIPPED_FOLD = 0


@dataclass(frozen=True)
class Row:
    text: str
    label: int
    group: str
    source: str  # written | chat_style | esconv
    category: str


# -- data ------------------------------------------------------------------------------------------


def esconv_turns(data_dir: Path, *, half: str) -> list[Row]:
    """ESConv-dev seeker turns of the even ("train") or odd ("heldout") conversations, crisis turns labelled."""
    crisis = _ids(ESCONV_LABELS_FILE, lambda row: row["crisis"] == "1")
    return [
        Row(row["text"], int(_id(row) in crisis), f"e{row['conversation']}", "esconv", "esconv")
        for row in _esconv_rows(data_dir / "esconv-dev" / "seeker_turns.csv", "text", half)
    ]


def esconv_replies(data_dir: Path, *, half: str) -> list[Row]:
    """ESConv-dev supporter replies of the even ("train") or odd ("heldout") conversations, all ordinary chat.

    The bot risk-judges a responder's messages too, and these are real typed replies: greetings, thanks, short
    answers, questions about feelings, crisis-line suggestions. Each belongs to its conversation's group. The
    excluded ids are all even, so a held-out (odd) reply is never left out."""
    excluded = _ids(ESCONV_REPLY_EXCLUDED_FILE, lambda row: True)
    return [
        Row(row["reply"], 0, f"e{row['conversation']}", "esconv", "esconv_reply")
        for row in _esconv_rows(data_dir / "esconv-dev" / "pairs.csv", "reply", half)
        if _id(row) not in excluded
    ]


def _esconv_rows(path: Path, text_column: str, half: str) -> list[dict[str, str]]:
    """A file's rows of one half (conversations split by parity) whose text is not blank."""
    if half not in ("train", "heldout"):
        raise ValueError("half must be 'train' or 'heldout'")
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            row
            for row in csv.DictReader(handle)
            if (int(row["conversation"]) % 2 == 0) == (half == "train") and row[text_column].strip()
        ]


def _id(row: dict[str, str]) -> tuple[str, str]:
    return row["conversation"], row["turn"]


def _ids(path: Path, keep: Callable[[dict[str, str]], bool]) -> set[tuple[str, str]]:
    """(conversation, turn) ids listed in an ids-only file, where ``keep`` says so."""
    with path.open(newline="") as handle:
        return {_id(row) for row in csv.DictReader(handle) if keep(row)}


@dataclass(frozen=True)
class Attempt:
    """What the code must know to reproduce a declared attempt (docs/models/risk-crisis-protocol.md): the written
    files in its pool and whether its cut-off rule also keeps short ordinary turns below high."""

    number: int
    written_files: tuple[Path, ...]
    short_ordinary_limit: float | None = None
    # Attempts 7-9 declared G not re-run: it scored 0.637 under attempt 6's looser rule, below their frozen
    # winners (0.697, 0.723, 0.731), and a stricter rule can only lower it.
    contrastive: bool = True
    # Attempt 10 declared H, the mean of B's and F(E8)'s logits.
    ensemble: bool = False
    # Attempt 11 adds the even conversations' supporter replies to the pool as ordinary chat.
    supporter_replies: bool = False
    # Attempt 13 adds TH, H's head over a LoRA-tuned encoder (3 seeds x 5 folds of tuning: about an hour).
    tuned_ensemble: bool = False
    # Attempt 14 declared TH alone: the frozen variants are not cross-validated.
    frozen_variants: bool = True
    # Attempt 15: the cut-off rule counts the even half's seeker turns and supporter replies each on its own (the
    # gate counts seeker turns; replies rarely score high, so pooled they let seeker turns take twice their share).
    ordinary_by_speaker: bool = False
    # Attempt 15: no refit; the first seed's fold-0 model ships, one of the models the cut-off was measured on.
    ships_fold_model: bool = False
    # Attempt 16: blends M<w> of TH's and the frozen H's out-of-fold logits, w the tuned head's share.
    blend_weights: tuple[float, ...] = ()
    # Attempt 27: H with each of these shares of its prototype logit (0.5: H as declared in attempt 10).
    prototype_shares: tuple[float, ...] = (0.5,)
    # Attempt 26: blind suites already spent as gates (category,expected,text), read in place as written rows.
    spent_suites: tuple[Path, ...] = ()
    # Attempt 28: TH is cross-validated for the first this many seeds only (None: every seed). Five tunings of the
    # larger pool take about half an hour on two cores; fifteen do not fit a session.
    tuned_seeds: int | None = None
    # Attempt 28: the frozen H the blends M<w> mix TH with, by its prototype share (attempt 16: H, 0.5).
    blend_partner_share: float = 0.5


_WRITTEN_PREFIX = {
    WRITTEN_FILE: "w",
    MORE_WRITTEN_FILE: "m",
    THIRD_WRITTEN_FILE: "t",
    FAREWELLS_FILE: "f",
    HYPERBOLE_FILE: "h",
    SHORT_FILE: "s",
    CHAT_WRITTEN_FILE: "d",
    DECOYS_FILE: "x",
    FOURTH_WRITTEN_FILE: "y",
    FIFTH_WRITTEN_FILE: "z",
    SIXTH_WRITTEN_FILE: "v",
}
_ATTEMPT_10 = Attempt(
    10,
    (WRITTEN_FILE, MORE_WRITTEN_FILE, THIRD_WRITTEN_FILE, FAREWELLS_FILE, HYPERBOLE_FILE, SHORT_FILE),
    short_ordinary_limit=0.0,
    contrastive=False,
    ensemble=True,
)
_ATTEMPT_12 = replace(
    _ATTEMPT_10,
    number=12,
    written_files=(*_ATTEMPT_10.written_files, CHAT_WRITTEN_FILE),
    supporter_replies=True,
)
# Attempt 14 is TH alone on attempt 13's pool plus the decoys.
_ATTEMPT_14 = replace(
    _ATTEMPT_12,
    number=14,
    written_files=(*_ATTEMPT_12.written_files, DECOYS_FILE),
    tuned_ensemble=True,
    frozen_variants=False,
)
# Attempt 15 is attempt 14's pool and TH with the cut-off rule by speaker and a fold model shipped.
_ATTEMPT_15 = replace(_ATTEMPT_14, number=15, ordinary_by_speaker=True, ships_fold_model=True)
# Attempt 16: attempt 15 with the frozen variants back (by speaker) and blends of TH with the frozen H.
_ATTEMPT_16 = replace(_ATTEMPT_15, number=16, frozen_variants=True, blend_weights=(0.3, 0.5, 0.7))
SUITES_FOLDER = Path(__file__).resolve().parents[2] / "tests" / "data"
# Suites 1-16: each was one attempt's gate (attempts 1-25) and is development data since; 17-19 are attempt 26's gate.
SPENT_SUITES = (
    SUITES_FOLDER / "risk_suite_independent.csv",
    *(SUITES_FOLDER / f"risk_suite_independent_{number}.csv" for number in range(2, 17)),
)


def _frozen_on_attempt_16(number: int, *added: Path) -> Attempt:
    """Attempt 16's frozen variants and rule on its pool plus more written files (no TH, no blends)."""
    return replace(
        _ATTEMPT_16,
        number=number,
        written_files=(*_ATTEMPT_16.written_files, *added),
        tuned_ensemble=False,
        blend_weights=(),
    )


ATTEMPTS = {
    attempt.number: attempt
    for attempt in (
        Attempt(5, (WRITTEN_FILE, MORE_WRITTEN_FILE)),
        Attempt(6, (WRITTEN_FILE, MORE_WRITTEN_FILE, THIRD_WRITTEN_FILE)),
        Attempt(
            7,
            (WRITTEN_FILE, MORE_WRITTEN_FILE, THIRD_WRITTEN_FILE),
            short_ordinary_limit=0.0,
            contrastive=False,
        ),
        Attempt(
            8,
            (WRITTEN_FILE, MORE_WRITTEN_FILE, THIRD_WRITTEN_FILE, FAREWELLS_FILE),
            short_ordinary_limit=0.0,
            contrastive=False,
        ),
        Attempt(
            9,
            (WRITTEN_FILE, MORE_WRITTEN_FILE, THIRD_WRITTEN_FILE, FAREWELLS_FILE, HYPERBOLE_FILE),
            short_ordinary_limit=0.0,
            contrastive=False,
        ),
        _ATTEMPT_10,
        # Attempt 11 is attempt 10 with the even conversations' supporter replies in the pool.
        replace(_ATTEMPT_10, number=11, supporter_replies=True),
        # Attempt 12 is attempt 11 with the chat-style rows in the pool.
        _ATTEMPT_12,
        # Attempt 13 is attempt 12 with TH declared.
        replace(_ATTEMPT_12, number=13, tuned_ensemble=True),
        _ATTEMPT_14,
        _ATTEMPT_15,
        _ATTEMPT_16,
        # Attempt 17: the fourth written rows. Attempt 22 (attempts 18-21 changed the phrase floor and the head's
        # reading, not training): the fifth, indirect crises and their look-alikes. Attempt 25 (23 blended two
        # heads, 24 changed the floor): the fifth and the sixth, ordinary lines that read like a crisis alone.
        _frozen_on_attempt_16(17, FOURTH_WRITTEN_FILE),
        _frozen_on_attempt_16(22, FIFTH_WRITTEN_FILE),
        _frozen_on_attempt_16(25, FIFTH_WRITTEN_FILE, SIXTH_WRITTEN_FILE),
        # Attempt 26: attempt 16's pool and every spent suite. Attempt 27: the same, H also with 0.7 prototypes.
        replace(_frozen_on_attempt_16(26), spent_suites=SPENT_SUITES),
        replace(_frozen_on_attempt_16(27), spent_suites=SPENT_SUITES, prototype_shares=(0.5, 0.7)),
        # Attempt 28: attempt 27 with TH (seed 13's five folds) blended with H0.7 at TH shares 0.2 and 0.3.
        replace(
            _frozen_on_attempt_16(28),
            spent_suites=SPENT_SUITES,
            prototype_shares=(0.5, 0.7),
            tuned_ensemble=True,
            blend_weights=(0.2, 0.3),
            tuned_seeds=1,
            blend_partner_share=0.7,
        ),
    )
}
# Attempts 6, 7 and 9 missed their declared ship gate; attempt 8 passed it and shipped until attempt 16, which
# missed the gate but passed its declared no-worse rule against attempt 8 (the protocol) and shipped until
# attempt 26, which passed its no-worse rule against attempt 16 on suites 17-19 pooled; attempt 27 (H0.7) passed its
# rule against attempt 26 on suites 20-22 pooled; attempt 28 (M0.3: TH blended with H0.7) passed its rule against
# attempt 27 on suites 23-25 pooled and ships.
SHIPPED_ATTEMPT = ATTEMPTS[28]


def training_pool(data_dir: Path, attempt: Attempt = SHIPPED_ATTEMPT) -> list[Row]:
    rows = []
    for path in attempt.written_files:
        prefix = _WRITTEN_PREFIX[path]
        if path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                for index, row in enumerate(csv.DictReader(handle)):
                    rows.append(
                        Row(row["text"], int(row["label"]), f"{prefix}{index}", "written", row["category"])
                    )
    for path in attempt.spent_suites:
        rows.extend(spent_suite_rows(path))
    with CHAT_STYLE_FILE.open(newline="", encoding="utf-8") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            label = int(row["suicidal"])
            rows.append(Row(row["text"], label, f"c{index}", "chat_style", row.get("kind") or "chat_style"))
    replies = esconv_replies(data_dir, half="train") if attempt.supporter_replies else []
    return rows + esconv_turns(data_dir, half="train") + replies


def spent_suite_rows(path: Path) -> list[Row]:
    """A spent suite's rows as written training rows (crisis = expected high), grouped by the suite's own ids.

    ``expected`` is checked as ``peercare eval risk --suite`` checks it: a typo must not make a crisis a negative."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if row["expected"] not in EXPECTED:
                raise EvaluationError(f"{path}:{number}: expected must be high or not_high")
            label = int(row["expected"] == "high")
            rows.append(Row(row["text"], label, f"{path.stem}:{row['id']}", "written", row["category"]))
    return rows


# -- augmentation ------------------------------------------------------------------------------------

_MARKUP: tuple[Callable[[str], str], ...] = (
    lambda text: f"**{text}**",
    lambda text: f"||{text}||",
    lambda text: f"> {text}",
    lambda text: f"<@123456789012345678> {text}",
    lambda text: f"{text} 😔",
    lambda text: f"{text} lol" if len(text) < 40 else text,
)


def augment(text: str, rng: random.Random) -> str:
    """One restyled copy: lower case, no punctuation, two typos, a Discord dressing, or lines split."""
    choice = rng.randrange(5)
    if choice == 0:
        return text.lower()
    if choice == 1:
        return "".join(char for char in text if char.isalnum() or char.isspace())
    if choice == 2:
        letters = list(text)
        for _ in range(2):
            if len(letters) > 3:
                at = rng.randrange(len(letters) - 1)
                letters[at], letters[at + 1] = letters[at + 1], letters[at]
        return "".join(letters)
    if choice == 3:
        return rng.choice(_MARKUP)(text)
    words = text.split()
    if len(words) < 4:
        return text.upper()
    cut = rng.randrange(1, len(words))
    return " ".join(words[:cut]) + "\n" + " ".join(words[cut:])


# -- embeddings --------------------------------------------------------------------------------------


@dataclass
class EmbeddingCache:
    """Sentence embeddings by normalised text, persisted as one .npz per encoder."""

    encoder: SentenceEncoder
    path: Path
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path.exists():
            stored = np.load(self.path)
            self.vectors = {key: stored[key] for key in stored.files}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [_key(text) for text in texts]
        todo = sorted(
            {key: text for key, text in zip(keys, texts, strict=True) if key not in self.vectors}.items()
        )
        if todo:
            log.info("embedding %d new texts", len(todo))
            fresh = self.encoder.embed([text for _, text in todo])
            self.vectors.update({key: fresh[i] for i, (key, _) in enumerate(todo)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.vectors)
        return np.stack([self.vectors[key] for key in keys]) if keys else np.zeros((0, 384), np.float32)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


# -- variants ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str = "logreg"
    c: float = 2.0
    chunk_window: int = 0
    augmented: bool = False
    layers: tuple[int, ...] | None = None  # None: the sentence embedding (last layer)
    lexical: bool = False  # add a TF-IDF logistic-regression logit (attempt 3's F)
    prototype_share: float = 0.5  # an ensemble's share of B's prototype logit (H: the mean; attempt 27: 0.7)


# Attempt 3: hidden states 2, 4 and 6 of the frozen encoder, pooled and concatenated.
LAYERS = (2, 4, 6)


def declared_variants(best_c: float | None = None) -> list[Variant]:
    """Attempt 1's first round (A, B); with ``best_c`` (A's best C), its second round (C, A-aug)."""
    if best_c is None:
        return [Variant(f"A{c:g}", c=c) for c in (0.5, 2.0, 8.0)] + [Variant("B", kind="prototypes")]
    return [
        Variant(f"C{best_c:g}", c=best_c, chunk_window=2),
        Variant(f"A{best_c:g}-aug", c=best_c, augmented=True),
    ]


def attempt3_variants() -> list[Variant]:
    return [Variant(f"E{c:g}", c=c, layers=LAYERS) for c in (0.5, 2.0, 8.0)]


def lexical_variant(base: Variant) -> Variant:
    """F: ``base`` (the better of A8 and the best E) with the word-level logit added."""
    return replace(base, name=f"F({base.name})", lexical=True)


def fit_head(variant: Variant, embeddings: np.ndarray, labels: np.ndarray, seed: int) -> CrisisHead:
    config = CrisisHeadConfig(
        kind=variant.kind,
        chunk_window=variant.chunk_window,
        layers=variant.layers,
        prototype_share=variant.prototype_share,
    )
    if variant.kind == "logreg":
        return CrisisHead(config, _regression_tensors(variant, embeddings, labels, seed))
    if variant.kind == "prototypes":
        return CrisisHead(config, _prototype_tensors(config, embeddings, labels))
    # H: the regression reads every layer's block, the prototypes the last one (see CrisisHead.logits).
    tensors = {
        **_regression_tensors(variant, embeddings, labels, seed),
        **_prototype_tensors(config, last_layer_block(embeddings, variant.layers), labels),
    }
    return CrisisHead(config, tensors)


def _regression_tensors(
    variant: Variant, embeddings: np.ndarray, labels: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=variant.c, class_weight="balanced", max_iter=5000, random_state=seed)
    model.fit(embeddings, labels)
    return {"weight": model.coef_[0].astype(np.float32), "bias": model.intercept_.astype(np.float32)}


def _prototype_tensors(
    config: CrisisHeadConfig, embeddings: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """B's tensors: every training row as a prototype, and a Platt fit on the training margins, each row left
    out of its own neighbours."""
    from sklearn.linear_model import LogisticRegression

    margins = _leave_one_out_margins(config.neighbours, embeddings, labels)
    platt = LogisticRegression(class_weight="balanced").fit(margins[:, None], labels)
    return {
        "positive": embeddings[labels == 1],
        "negative": embeddings[labels == 0],
        "platt": np.array([platt.coef_[0][0], platt.intercept_[0]], dtype=np.float32),
    }


def _leave_one_out_margins(k: int, embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    similarities = embeddings @ embeddings.T
    np.fill_diagonal(similarities, -np.inf)
    positive = np.sort(similarities[:, labels == 1], axis=1)[:, -k:].mean(axis=1)
    negative = np.sort(similarities[:, labels == 0], axis=1)[:, -k:].mean(axis=1)
    return positive - negative


def lowest_cut_off(scores: np.ndarray, limit: float) -> float:
    """The lowest cut-off at which at most ``limit`` of ``scores`` reach it."""
    allowed = int(np.floor(limit * len(scores)))
    ranked = np.sort(scores)[::-1]
    if allowed >= len(ranked):
        return float("-inf")
    return float(np.nextafter(ranked[allowed], np.inf))


def _logits_where(logits: np.ndarray, rows: Sequence[Row], keep: Callable[[Row], bool]) -> np.ndarray:
    return np.array([lg for lg, row in zip(logits, rows, strict=True) if keep(row)])


def _negatives(logits: np.ndarray, rows: Sequence[Row], *, ordinary: bool) -> np.ndarray:
    """Logits of the ESConv negatives (``ordinary``) or of the written and chat-style (hard) negatives."""
    return _logits_where(logits, rows, lambda row: (row.source == "esconv") == ordinary and not row.label)


def _spoken_by(category: str) -> Callable[[Row], bool]:
    """An ESConv negative of one speaker: seeker turns (``esconv``) or supporter replies (``esconv_reply``)."""
    return lambda row: row.category == category and not row.label


def _ordinary_of(logits: np.ndarray, rows: Sequence[Row], category: str) -> np.ndarray:
    """Logits of the ESConv negatives of one speaker."""
    return _logits_where(logits, rows, _spoken_by(category))


def _short_ordinary(logits: np.ndarray, rows: Sequence[Row]) -> np.ndarray:
    """Logits of the ESConv negatives of at most ``SHORT_WORDS`` words ("ok", "thank you", "goodbye")."""
    return _logits_where(
        logits,
        rows,
        lambda row: row.source == "esconv" and not row.label and len(row.text.split()) <= SHORT_WORDS,
    )


def cut_off_for(
    logits: np.ndarray, rows: Sequence[Row], short_limit: float | None = None, by_speaker: bool = False
) -> float:
    """The declared rule: ordinary turns <= 0.5 %, hard negatives <= 3 %; with ``short_limit`` (attempt 7: 0),
    ordinary turns of <= 3 words at most that share too (issue 13's target for them is 0); with ``by_speaker``
    (attempt 15), seeker turns and supporter replies each <= 0.5 % on their own."""
    if by_speaker:
        ordinary = max(
            lowest_cut_off(_ordinary_of(logits, rows, "esconv"), ORDINARY_LIMIT),
            lowest_cut_off(_ordinary_of(logits, rows, "esconv_reply"), ORDINARY_LIMIT),
        )
    else:
        ordinary = lowest_cut_off(_negatives(logits, rows, ordinary=True), ORDINARY_LIMIT)
    cut = max(ordinary, lowest_cut_off(_negatives(logits, rows, ordinary=False), HARD_NEGATIVE_LIMIT))
    if short_limit is None:
        return cut
    return max(cut, lowest_cut_off(_short_ordinary(logits, rows), short_limit))


def cross_validate(
    variant: Variant,
    rows: Sequence[Row],
    cache: EmbeddingCache,
    seed: int,
    short_limit: float | None = None,
    by_speaker: bool = False,
) -> dict:
    """Out-of-fold logits of ``variant`` over the pool (``cache`` holds the embeddings the variant reads)."""
    from sklearn.model_selection import StratifiedGroupKFold

    texts = [reading(normalise_chat(row.text)) for row in rows]
    labels = np.array([row.label for row in rows])
    groups = [row.group for row in rows]
    whole = cache.embed(texts)
    logits = np.zeros(len(rows))
    rng = random.Random(seed)
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train, test in splitter.split(whole, labels, groups):
        x, y = whole[train], labels[train]
        if variant.augmented:
            extra = [i for i in train if rows[i].source != "esconv"]
            styled = [reading(normalise_chat(augment(rows[i].text, rng))) for i in extra]
            x = np.concatenate([x, cache.embed(styled)])
            y = np.concatenate([y, labels[extra]])
        head = fit_head(variant, x, y, seed)
        logits[test] = head.message_logits(cache, [rows[i].text for i in test])
        if variant.lexical:
            words = fit_crisis_lexical([texts[i] for i in train], labels[train])
            logits[test] += words.logits([texts[i] for i in test])[:, 0]
    return out_of_fold_result(seed, logits, rows, short_limit, by_speaker)


def fit_crisis_lexical(texts: Sequence[str], labels: np.ndarray):
    """F's word-level head: TF-IDF (sublinear tf, min_df 2) + class-balanced logistic regression, C = 1."""
    from inference.risk.lexical import fit_lexical_head

    return fit_lexical_head(
        texts, labels[:, None].astype(np.float32), np.ones((len(texts), 1), np.float32), ["crisis"]
    )


def out_of_fold_result(
    seed: int,
    logits: np.ndarray,
    rows: Sequence[Row],
    short_limit: float | None = None,
    by_speaker: bool = False,
) -> dict:
    """One seed's out-of-fold logits judged by the declared rule: the cut-off, recall at it, the rates."""
    labels = np.array([row.label for row in rows])
    cut = cut_off_for(logits, rows, short_limit, by_speaker)
    positives = logits[labels == 1]
    return {
        "seed": seed,
        "cut_off_logit": cut,
        "recall": float((positives >= cut).mean()),
        "elevated_cut_off_logit": float(np.quantile(positives, 1 - ELEVATED_RECALL)),
        "elevated_ordinary_cut_off_logit": lowest_cut_off(
            _negatives(logits, rows, ordinary=True), ELEVATED_ORDINARY_LIMIT
        ),
        "ordinary_high_rate": _rate(logits, rows, cut, lambda row: row.source == "esconv" and not row.label),
        "hard_negative_high_rate": _rate(
            logits, rows, cut, lambda row: row.source != "esconv" and not row.label
        ),
        "seeker_turn_high_rate": _rate(logits, rows, cut, _spoken_by("esconv")),
        "oof_logits": logits,
    }


def _rate(logits: np.ndarray, rows: Sequence[Row], cut: float, keep: Callable[[Row], bool]) -> float:
    chosen = [lg >= cut for lg, row in zip(logits, rows, strict=True) if keep(row)]
    return float(np.mean(chosen)) if chosen else 0.0


def summarise(runs: Sequence[dict]) -> dict:
    recalls = np.array([run["recall"] for run in runs])
    return {
        "recall_mean": float(recalls.mean()),
        "recall_sd": float(recalls.std(ddof=1)) if len(recalls) > 1 else 0.0,
        "per_seed": [{key: value for key, value in run.items() if key != "oof_logits"} for run in runs],
    }


_COST = {"A": 0, "B": 1, "C": 2, "E": 3, "F": 4, "H": 5, "T": 6, "M": 7}


def choose(report: dict[str, dict]) -> str:
    """The declared rule: highest mean recall; within 0.01, the cheaper variant."""
    best = max(entry["recall_mean"] for entry in report.values())
    close = [name for name, entry in report.items() if entry["recall_mean"] >= best - 0.01]
    return min(close, key=lambda name: (_COST[name[0]], name.endswith("-aug"), -report[name]["recall_mean"]))


CacheFor = Callable[[Variant], EmbeddingCache]


def run_selection(
    rows: Sequence[Row],
    cache_for: CacheFor,
    seeds: Sequence[int] = SEEDS,
    short_limit: float | None = None,
    ensemble: bool = False,
    by_speaker: bool = False,
    runs: dict[str, list[dict]] | None = None,
    prototype_shares: Sequence[float] = (0.5,),
    partner_share: float = 0.5,
) -> dict:
    """Attempts 1 and 3 of the protocol (attempt 2's tuned D was stopped, see the protocol), and with
    ``ensemble`` attempt 10's H (one per share of its prototype logit, attempt 27), judged together by the declared
    rule. ``runs``, when given, receives every variant's per-seed runs with their out-of-fold logits (attempt 16
    blends H's with TH's)."""
    variants: dict[str, Variant] = {}
    report: dict[str, dict] = {}
    runs = {} if runs is None else runs

    def record(variant: Variant, variant_runs: list[dict]) -> None:
        variants[variant.name], runs[variant.name] = variant, variant_runs
        report[variant.name] = summarise(variant_runs)
        log.info("crisis variant %s: recall %.3f", variant.name, report[variant.name]["recall_mean"])

    def evaluate(variant: Variant) -> None:
        cache = cache_for(variant)
        record(
            variant, [cross_validate(variant, rows, cache, seed, short_limit, by_speaker) for seed in seeds]
        )

    for variant in declared_variants() + attempt3_variants():
        evaluate(variant)
    plain = [name for name in report if name.startswith("A")]
    best_c = variants[max(plain, key=lambda name: report[name]["recall_mean"])].c
    for variant in declared_variants(best_c):
        evaluate(variant)
    best_e = max((n for n in report if n.startswith("E")), key=lambda name: report[name]["recall_mean"])
    base = "A8" if report["A8"]["recall_mean"] >= report[best_e]["recall_mean"] else best_e
    lexical = lexical_variant(variants[base])
    evaluate(lexical)
    if ensemble and lexical.layers is not None:
        # The same seeds give the same folds, so a mix of two out-of-fold logits is H's out-of-fold logit.
        for share in prototype_shares:
            mixed = mixed_runs(runs[lexical.name], runs["B"], 1 - share, rows, short_limit, by_speaker)
            record(ensemble_variant(lexical, share), mixed)
    winner = choose(report)
    selection = {"variants": report, "winner": winner, "winner_spec": asdict(variants[winner])}
    if ensemble and lexical.layers is not None:
        # What a blend's frozen half is (attempt 16: H; attempt 28: H0.7), kept so ``--selection`` can rebuild it.
        selection["ensemble_spec"] = asdict(ensemble_variant(lexical, partner_share))
    return selection


def mixed_runs(
    first: Sequence[dict],
    second: Sequence[dict],
    first_share: float,
    rows: Sequence[Row],
    short_limit: float | None,
    by_speaker: bool,
) -> list[dict]:
    """Seed by seed, ``first_share`` x the first variant's out-of-fold logit + the rest x the second's, judged by the
    declared rule. One seed gives both variants the same folds, so the mix is itself out of fold (H, attempt 16's
    blends)."""
    mixed = []
    for one, other in zip(first, second, strict=True):
        if one["seed"] != other["seed"]:
            raise ValueError("mixing two variants needs their out-of-fold logits from the same seeds")
        logits = first_share * one["oof_logits"] + (1 - first_share) * other["oof_logits"]
        mixed.append(out_of_fold_result(one["seed"], logits, rows, short_limit, by_speaker))
    return mixed


def ensemble_variant(lexical: Variant, prototype_share: float = 0.5) -> Variant:
    """H: F(E…)'s regression over its layers plus its word logit, mixed with B's prototypes (``prototype_share`` of
    the logit; "H0.7(B+F(E8))" names a share other than the mean)."""
    share = "" if prototype_share == 0.5 else f"{prototype_share:g}"
    return replace(
        lexical, name=f"H{share}(B+{lexical.name})", kind="ensemble", prototype_share=prototype_share
    )


CONTRASTIVE_SEED = 13
CONTRASTIVE_MARGIN = 0.01


def with_contrastive(report: dict, run: dict) -> dict:
    """G (one seed, the dearest variant) replaces the frozen winner only if its out-of-fold recall beats the
    winner's recall for the same seed *and* its mean over seeds by more than 0.01 (attempt 4 compared the same
    seed only, inside the noise; the protocol's attempt 5 added the mean)."""
    frozen = report["variants"][report["winner"]]
    same_seed = [r["recall"] for r in frozen["per_seed"] if r["seed"] == run["seed"]]
    report["variants"][CONTRASTIVE.name] = summarise([run])
    bar = max([*same_seed, frozen["recall_mean"]]) if same_seed else None
    if bar is not None and run["recall"] > bar + CONTRASTIVE_MARGIN:
        report["winner"], report["winner_spec"] = CONTRASTIVE.name, asdict(CONTRASTIVE)
    return report


def fit_final(spec: dict, rows: Sequence[Row], cache: EmbeddingCache) -> CrisisHead:
    """The winner refitted on the whole pool (its cut-offs come from the cross-validation: ``cut_offs_from``)."""
    variant = Variant(**{**spec, "layers": tuple(spec["layers"]) if spec.get("layers") else None})
    texts = [reading(normalise_chat(row.text)) for row in rows]
    x, y = cache.embed(texts), np.array([row.label for row in rows])
    if variant.augmented:
        rng = random.Random(SEEDS[0])
        extra = [i for i, row in enumerate(rows) if row.source != "esconv"]
        styled = [reading(normalise_chat(augment(rows[i].text, rng))) for i in extra]
        x, y = np.concatenate([x, cache.embed(styled)]), np.concatenate([y, y[extra]])
    head = fit_head(variant, x, y, SEEDS[0])
    if not variant.lexical:
        return head
    words = fit_crisis_lexical(texts, np.array([row.label for row in rows]))
    return CrisisHead(replace(head.config, lexical=LEXICAL_FILE), head.tensors, words)


def _probability(logit: float) -> float:
    return round(float(1.0 / (1.0 + np.exp(-logit))), 4)


def chunked_texts_for(texts: Sequence[str], window: int) -> list[list[str]]:
    return [chunks(normalise_chat(text), window=window) for text in texts]


def write_report(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")


# -- attempt 2: a LoRA-tuned encoder -------------------------------------------------------------------

TUNED = Variant("D", kind="logreg", chunk_window=2, augmented=True)


@dataclass(frozen=True)
class TunedRecipe(LoraShape):
    lr: float = 5e-4
    batch_size: int = 32
    epochs: int = 4
    restyle_probability: float = 0.5
    # Why these three: on 2 CPU cores a full pass took ~3 min an epoch. The lower blocks stay frozen (no backward
    # through them), ESConv negatives are a fresh random 600 each epoch, and batches group similar lengths.
    blocks: tuple[int, ...] = (2, 3, 4, 5)
    ordinary_per_epoch: int = 600
    max_tokens: int = 96
    # The head reads a unit vector, so its logit is at most |w|: a scale lets it reach confident logits without
    # waiting for |w| to grow (a cosine classifier's temperature). D trained with 1.
    logit_scale: float = 1.0


def fit_tuned(base_encoder, tokenizer, rows: Sequence[Row], seed: int, recipe: TunedRecipe = TunedRecipe()):
    """A LoRA-adapted copy of the encoder (a peft model: save its adapter, or merge it to read with it) and
    a linear head over its normalised sentence embedding."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoder = lora_copy(base_encoder, recipe)
    head = torch.nn.Linear(base_encoder.config.hidden_size, 1)
    labels = torch.tensor([row.label for row in rows], dtype=torch.float32)
    positive = float(labels.sum())
    weight = torch.tensor((len(rows) - positive) / max(positive, 1.0))
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    encoder.train()
    written = [i for i, row in enumerate(rows) if row.source != "esconv" or row.label]
    ordinary = [i for i, row in enumerate(rows) if row.source == "esconv" and not row.label]
    for epoch in range(recipe.epochs):
        chosen = written + rng.sample(ordinary, min(recipe.ordinary_per_epoch, len(ordinary)))
        for_epoch = [rows[i] for i in chosen]
        batches = _length_batches(chosen, [len(row.text) for row in for_epoch], recipe.batch_size, rng)
        total = 0.0
        for batch in batches:
            texts = []
            for i in batch:
                text = rows[i].text
                if rows[i].source != "esconv" and rng.random() < recipe.restyle_probability:
                    text = augment(text, rng)
                texts.append(head_text(text))
            encoded = tokenizer(
                texts, padding=True, truncation=True, max_length=recipe.max_tokens, return_tensors="pt"
            )
            states = encoder(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize(
                (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1
            )
            logits = head(pooled).squeeze(-1) * recipe.logit_scale
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels[batch], pos_weight=weight
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        log.info("crisis tuning epoch %d/%d: loss %.4f", epoch + 1, recipe.epochs, total / len(chosen))
    encoder.eval()
    tensors = {
        "weight": head.weight.detach()[0].numpy().astype(np.float32),
        "bias": head.bias.detach().numpy().astype(np.float32),
    }
    return encoder, CrisisHead(CrisisHeadConfig(kind="logreg", chunk_window=TUNED.chunk_window), tensors)


def _length_batches(indices: list[int], lengths: list[int], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar-length rows (less padding), in a random order."""
    order = sorted(range(len(indices)), key=lambda at: (lengths[at], rng.random()))
    batches = [[indices[at] for at in order[start : start + size]] for start in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def cross_validate_tuned(base_encoder, tokenizer, rows: Sequence[Row], seed: int) -> dict:
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([row.label for row in rows])
    groups = [row.group for row in rows]
    logits = np.zeros(len(rows))
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(rows)), labels, groups)):
        tuned, head = fit_tuned(base_encoder, tokenizer, [rows[i] for i in train], seed * 100 + fold)
        reader = SentenceEncoder(tuned.merge_and_unload(), tokenizer)
        pieces, owners = head.message_texts([rows[i].text for i in test])
        piece_logits = head.logits(reader.embed(pieces))
        best = np.full(len(test), -np.inf)
        np.maximum.at(best, np.asarray(owners), piece_logits)
        logits[test] = best
        log.info("seed %d fold %d done", seed, fold)
    return out_of_fold_result(seed, logits, rows)


# -- the whole run: select, refit, write into a risk model folder ---------------------------------------


def cut_offs_from(runs: Sequence[dict]) -> dict[str, float]:
    """Shipped cut-offs (probabilities): the median over seeds of each seed's declared cut-offs. Elevated is the
    higher of the recall cut-off and the ordinary-chat one (runs from before that amendment lack the latter)."""
    high = float(np.median([run["cut_off_logit"] for run in runs]))
    elevated = float(np.median([run["elevated_cut_off_logit"] for run in runs]))
    if all("elevated_ordinary_cut_off_logit" in run for run in runs):
        elevated = max(elevated, float(np.median([run["elevated_ordinary_cut_off_logit"] for run in runs])))
    return {"high": _probability(high), "elevated": _probability(min(high, elevated))}


# The label whose tiers the crisis head takes over. Its probability is still reported; it decides nothing:
# on ESConv-dev's even conversations it put 37 % of ordinary turns (66 % of those of <= 3 words) at elevated.
REPLACED_LABELS = ("suicidal",)


CRISIS_METHOD_PREFIX = "; crisis (decides high): "


def write_crisis_calibration(folder: Path, cut_offs: dict[str, float], method: str) -> None:
    """The crisis label takes over the high tier (the only label with a high cut-off after this) and the
    elevated cut-offs of ``REPLACED_LABELS``."""
    from inference.risk.crisis import CRISIS_LABEL
    from inference.risk.model_folder import CALIBRATION_FILE, write_json

    path = folder / CALIBRATION_FILE
    data = json.loads(path.read_text()) if path.exists() else {"temperature": {}, "thresholds": {}}
    thresholds = data.setdefault("thresholds", {})
    thresholds["high"] = {CRISIS_LABEL: cut_offs["high"]}
    elevated = thresholds.setdefault("elevated", {})
    for label in REPLACED_LABELS:
        elevated.pop(label, None)
    elevated[CRISIS_LABEL] = cut_offs["elevated"]
    # Replaces an earlier crisis head's sentence (a refit into a folder that had one), keeps the other labels'.
    others = data.get("method", "").split(CRISIS_METHOD_PREFIX)[0].rstrip("; ")
    data["method"] = f"{others}{CRISIS_METHOD_PREFIX}{method}".lstrip("; ")
    data.setdefault("decision", {})[CRISIS_LABEL] = cut_offs["high"]
    write_json(path, data)


def train_tuned_head(base_model: str, rows: Sequence[Row], output: Path, seed: int) -> None:
    """Fit D on the whole pool and save its adapter and head into ``output``."""
    from dataclasses import replace

    from inference.risk.features import load_encoder

    encoder, tokenizer = load_encoder(base_model)
    peft_model, head = fit_tuned(encoder, tokenizer, rows, seed)
    contrastive.save_adapter(peft_model, output / "crisis_adapter", base_model)
    config = replace(head.config, base_model=base_model, adapter="crisis_adapter")
    CrisisHead(config, head.tensors).save(output)


# -- attempt 13: H's head over a LoRA-tuned encoder ---------------------------------------------------------

TUNED_ENSEMBLE = Variant("TH", kind="ensemble", c=8.0, layers=LAYERS, lexical=True)
# The declaration's recipe: every block adapted, 2 epochs, every ESConv row each epoch, a cosine-classifier scale.
TUNED_ENSEMBLE_RECIPE = TunedRecipe(
    blocks=(0, 1, 2, 3, 4, 5), epochs=2, ordinary_per_epoch=10**9, max_tokens=64, logit_scale=16.0
)


def tuned_ensemble_head(
    base_encoder, tokenizer, rows: Sequence[Row], seed: int
) -> tuple[Any, SentenceEncoder, CrisisHead]:
    """TH fitted on ``rows``: the tuned peft model, the merged encoder reading TH's layers, and the head (H's, with
    its word logit) fitted on that encoder's embeddings of the same rows."""
    tuned, _ = fit_tuned(base_encoder, tokenizer, rows, seed, TUNED_ENSEMBLE_RECIPE)
    # Merged into a copy: ``tuned`` keeps its adapter for saving (merging unloads it).
    reader = SentenceEncoder(copy.deepcopy(tuned).merge_and_unload(), tokenizer, layers=TUNED_ENSEMBLE.layers)
    texts = [head_text(row.text) for row in rows]
    labels = np.array([row.label for row in rows])
    head = fit_head(TUNED_ENSEMBLE, reader.embed(texts), labels, seed)
    words = fit_crisis_lexical(texts, labels)
    return tuned, reader, CrisisHead(replace(head.config, lexical=LEXICAL_FILE), head.tensors, words)


def tuning_folds(rows: Sequence[Row], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tuned heads' (train, test) index folds for ``seed``: stratified by label, grouped by conversation."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([row.label for row in rows])
    groups = [row.group for row in rows]
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(rows)), labels, groups))


def fold_seed(seed: int, fold: int) -> int:
    """The seed a fold's model is tuned with (so the shipped fold model is the cross-validation's own)."""
    return seed * 100 + fold


def cross_validate_tuned_ensemble(
    base_encoder,
    tokenizer,
    rows: Sequence[Row],
    seed: int,
    short_limit: float | None = None,
    by_speaker: bool = False,
) -> dict:
    """TH's out-of-fold logits: per fold, tune on the training rows and fit the head on their tuned embeddings,
    then read the held-out fold's messages as the scorer would (``CrisisHead.probabilities``' logit)."""
    logits = np.zeros(len(rows))
    for fold, (train, test) in enumerate(tuning_folds(rows, seed)):
        _, reader, head = tuned_ensemble_head(
            base_encoder, tokenizer, [rows[i] for i in train], fold_seed(seed, fold)
        )
        logits[test] = head.message_logits(reader, [rows[i].text for i in test])
        log.info("tuned ensemble seed %d fold %d done", seed, fold)
    return out_of_fold_result(seed, logits, rows, short_limit, by_speaker)


def with_tuned_ensemble(report: dict, runs: Sequence[dict]) -> dict:
    """TH joins the frozen variants under the declared rule (the dearest variant: it must beat the best by more than
    0.01 to win)."""
    report["variants"][TUNED_ENSEMBLE.name] = summarise(runs)
    report["winner"] = choose(report["variants"])
    if report["winner"] == TUNED_ENSEMBLE.name:
        report["winner_spec"] = asdict(TUNED_ENSEMBLE)
    return report


BLEND_PREFIX = "M"
# Where a blend's frozen half lives inside the model folder (its config names it).
BLEND_FOLDER = "crisis_frozen"


def blend_name(weight: float) -> str:
    return f"{BLEND_PREFIX}{weight:g}"


def with_blends(
    report: dict,
    frozen_runs: Sequence[dict],
    tuned_runs: Sequence[dict],
    rows: Sequence[Row],
    weights: Sequence[float],
    short_limit: float | None,
    by_speaker: bool,
) -> dict:
    """Attempt 16's M<w>: w x TH's + (1 - w) x the frozen H's out-of-fold logit, seed by seed (one seed gives both
    the same folds), judged by the same rule; a blend is the dearest variant (one tuned and one frozen pass)."""
    # TH may have run for fewer seeds than the frozen variants (attempt 28): mix the seeds both have.
    tuned_seeds = {run["seed"] for run in tuned_runs}
    frozen_runs = [run for run in frozen_runs if run["seed"] in tuned_seeds]
    for weight in weights:
        mixed = mixed_runs(tuned_runs, frozen_runs, weight, rows, short_limit, by_speaker)
        report["variants"][blend_name(weight)] = summarise(mixed)
    report["winner"] = choose(report["variants"])
    if report["winner"].startswith(BLEND_PREFIX):
        report["winner_spec"] = {"blend_weight": float(report["winner"][len(BLEND_PREFIX) :])}
    return report


def train_tuned_ensemble_head(base_model: str, rows: Sequence[Row], output: Path, seed: int) -> CrisisHead:
    """Fit TH on ``rows``; save its LoRA adapter (crisis_adapter/) and head into ``output``; return the head."""
    from inference.risk.features import load_encoder

    encoder, tokenizer = load_encoder(base_model)
    tuned, _, head = tuned_ensemble_head(encoder, tokenizer, rows, seed)
    contrastive.save_adapter(tuned, output / "crisis_adapter", base_model)
    config = replace(head.config, base_model=base_model, adapter="crisis_adapter")
    saved = CrisisHead(config, head.tensors, head.lexical)
    saved.save(output)
    return saved


def _save_out_of_fold(path: Path, runs: dict[str, list[dict]]) -> None:
    """Every variant's out-of-fold logits per seed beside the embedding cache (not in the model folder), so a
    later look at the cross-validation needs no re-tuning."""
    arrays = {f"{name}/{run['seed']}": run["oof_logits"] for name, seeds in runs.items() for run in seeds}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def frozen_head(spec: dict, rows: Sequence[Row], cache_for: CacheFor, base_model: str) -> CrisisHead:
    """A frozen-encoder variant (``spec``: its ``Variant`` as the report stores it) fitted on ``rows``."""
    layers = tuple(spec["layers"]) if spec.get("layers") else None
    head = fit_final(dict(spec), rows, cache_for(Variant(spec["name"], layers=layers)))
    return CrisisHead(replace(head.config, base_model=base_model), head.tensors, head.lexical)


def train_blended_head(
    base_model: str, rows: Sequence[Row], output: Path, seed: int, weight: float, frozen: CrisisHead
) -> None:
    """Attempt 16's blend: TH fitted on ``rows`` (its adapter and head, as ``train_tuned_ensemble_head``) blended
    with ``frozen`` (the frozen H fitted on the same rows), saved in ``BLEND_FOLDER``; TH's share is ``weight``."""
    tuned = train_tuned_ensemble_head(base_model, rows, output, seed)
    config = replace(tuned.config, blend=BLEND_FOLDER, blend_weight=weight)
    CrisisHead(config, tuned.tensors, tuned.lexical, partner=frozen).save(output)


def caches_for(encoder, tokenizer, cache_path: Path) -> CacheFor:
    """One embedding cache per reading of the encoder (sentence embedding, or a set of hidden layers)."""
    caches: dict[tuple[int, ...] | None, EmbeddingCache] = {}

    def cache_for(variant: Variant) -> EmbeddingCache:
        if variant.layers not in caches:
            path = cache_path
            if variant.layers is not None:
                suffix = "".join(str(layer) for layer in variant.layers)
                path = cache_path.with_name(f"{cache_path.stem}-layers{suffix}{cache_path.suffix}")
            reader = SentenceEncoder(encoder, tokenizer, layers=variant.layers)
            caches[variant.layers] = EmbeddingCache(reader, path)
        return caches[variant.layers]

    return cache_for


def train_crisis(
    *,
    output: Path,
    data_dir: Path,
    base_model: str,
    seeds: Sequence[int],
    selection_path: Path | None,
    cache_path: Path,
    attempt: Attempt = SHIPPED_ATTEMPT,
) -> dict:
    """Select (or reuse a selection), refit the winner on the whole pool and write it into ``output``.

    ``attempt``: whose pool and cut-off rule (``ATTEMPTS``); the default reproduces the shipped head.

    Runs attempts 1 and 3's frozen variants (3 seeds, minutes) and, where ``attempt.contrastive``, attempt 4's
    contrastive G (seed 13 only: ~20-40 minutes on two cores). Attempt 2's tuned D is not re-run: it was stopped as underfit (see the protocol); its code stays for
    ``train_tuned_head`` should a later attempt declare it again."""
    from inference.risk.features import load_encoder

    rows = training_pool(data_dir, attempt)
    short_limit = attempt.short_ordinary_limit
    encoder, tokenizer = load_encoder(base_model)
    cache_for = caches_for(encoder, tokenizer, cache_path)
    if selection_path is not None:
        report = json.loads(selection_path.read_text())
    else:
        frozen_runs: dict[str, list[dict]] = {}
        tuned_runs: list[dict] = []
        report = (
            run_selection(
                rows,
                cache_for,
                seeds,
                short_limit,
                ensemble=attempt.ensemble,
                by_speaker=attempt.ordinary_by_speaker,
                runs=frozen_runs,
                prototype_shares=attempt.prototype_shares,
                partner_share=attempt.blend_partner_share,
            )
            if attempt.frozen_variants
            else {"variants": {}}
        )
        if attempt.contrastive:
            contrastive_run = cross_validate_contrastive(
                encoder, tokenizer, rows, CONTRASTIVE_SEED, short_limit=short_limit
            )
            report = with_contrastive(report, contrastive_run)
        if attempt.tuned_ensemble:
            tuned_runs = [
                cross_validate_tuned_ensemble(
                    encoder, tokenizer, rows, seed, short_limit, attempt.ordinary_by_speaker
                )
                for seed in seeds[: attempt.tuned_seeds]
            ]
            report = with_tuned_ensemble(report, tuned_runs)
            if attempt.blend_weights:
                report = with_blends(
                    report,
                    frozen_runs[report["ensemble_spec"]["name"]],
                    tuned_runs,
                    rows,
                    attempt.blend_weights,
                    short_limit,
                    attempt.ordinary_by_speaker,
                )
        _save_out_of_fold(
            cache_path.parent / f"oof-attempt{attempt.number}.npz",
            {**frozen_runs, TUNED_ENSEMBLE.name: tuned_runs},
        )
    winner = report["winner"]
    cut_offs = cut_offs_from(report["variants"][winner]["per_seed"])
    report["cut_offs"] = cut_offs
    # Written before the refit, so a refit that fails keeps the (long) selection for --selection.
    write_report(output / "crisis_selection.json", report)
    # What ships is fitted on these rows with this seed: the whole pool, or (attempt 15 on) the first seed's fold 0.
    ship_rows, ship_seed = list(rows), seeds[0]
    if attempt.ships_fold_model:
        train, _ = tuning_folds(rows, seeds[0])[SHIPPED_FOLD]
        ship_rows, ship_seed = [rows[i] for i in train], fold_seed(seeds[0], SHIPPED_FOLD)
    if winner == CONTRASTIVE.name:
        train_contrastive_head(base_model, rows, output, seed=CONTRASTIVE_SEED)
    elif winner == TUNED.name:
        train_tuned_head(base_model, rows, output, seed=seeds[0])
    elif winner == TUNED_ENSEMBLE.name:
        train_tuned_ensemble_head(base_model, ship_rows, output, ship_seed)
    elif winner.startswith(BLEND_PREFIX):
        train_blended_head(
            base_model,
            ship_rows,
            output,
            ship_seed,
            report["winner_spec"]["blend_weight"],
            frozen_head(report["ensemble_spec"], ship_rows, cache_for, base_model),
        )
    else:
        frozen_head(report["winner_spec"], ship_rows, cache_for, base_model).save(output)
    ordinary = "seeker turns and supporter replies each" if attempt.ordinary_by_speaker else "ordinary-chat"
    shipped = (
        f"; the model of seed {seeds[0]} fold {SHIPPED_FOLD}, no refit" if attempt.ships_fold_model else ""
    )
    if winner.startswith(BLEND_PREFIX):
        shipped += f" (TH blended with the frozen {report['ensemble_spec']['name']} in {BLEND_FOLDER}/)"
    method = (
        f"variant {winner} by docs/models/risk-crisis-protocol.md{shipped}; high = median over seeds of the lowest "
        f"cut-off with out-of-fold {ordinary} high <= {ORDINARY_LIMIT:.1%} and hard negatives <= "
        f"{HARD_NEGATIVE_LIMIT:.0%}"
        + ("" if short_limit is None else f" and no ordinary turn of <= {SHORT_WORDS} words")
        + f"; elevated = out-of-fold crisis recall {ELEVATED_RECALL} (attempt {attempt.number})"
    )
    write_crisis_calibration(output, cut_offs, method)
    report["cut_offs"] = cut_offs
    write_report(output / "crisis_selection.json", report)
    return report


# -- attempt 4: SetFit's contrastive recipe on a LoRA-adapted encoder -------------------------------------

CONTRASTIVE = Variant("G", kind="logreg", c=2.0)


@dataclass(frozen=True)
class ContrastiveRecipe(contrastive.ContrastiveRecipe):
    """SetFit's recipe (``inference.contrastive``) with the crisis pool's sampling: a fresh random share of the
    ordinary ESConv negatives per fit, and written rows restyled as chat now and then."""

    ordinary_per_fit: int = 600
    restyle_probability: float = 0.3


def contrastive_pairs(rows: Sequence[Row], rng: random.Random, recipe: ContrastiveRecipe) -> list:
    """(text a, text b, 1.0 same label / 0.0 not) for every written/chat row and a sample of ESConv negatives."""
    chosen = [row for row in rows if row.source != "esconv" or row.label]
    ordinary = [row for row in rows if row.source == "esconv" and not row.label]
    chosen += rng.sample(ordinary, min(recipe.ordinary_per_fit, len(ordinary)))

    def styled(row: Row) -> str:
        text = row.text
        if row.source != "esconv" and rng.random() < recipe.restyle_probability:
            text = augment(text, rng)
        return head_text(text)

    return contrastive.label_pairs(chosen, lambda row: row.label, styled, rng, recipe)


def fit_contrastive(base_encoder, tokenizer, rows: Sequence[Row], seed: int, recipe: ContrastiveRecipe):
    """One pass of CosineSimilarityLoss over ``contrastive_pairs``; returns the peft model (eval mode)."""
    pairs = contrastive_pairs(rows, random.Random(seed), recipe)
    return contrastive.tune_contrastive(base_encoder, tokenizer, pairs, seed, recipe)


def cross_validate_contrastive(
    base_encoder,
    tokenizer,
    rows: Sequence[Row],
    seed: int,
    recipe: ContrastiveRecipe = ContrastiveRecipe(),
    short_limit: float | None = None,
) -> dict:
    """G's out-of-fold logits: per fold, tune on the training rows, fit the head on their tuned embeddings."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([row.label for row in rows])
    groups = [row.group for row in rows]
    texts = [head_text(row.text) for row in rows]
    logits = np.zeros(len(rows))
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(rows)), labels, groups)):
        tuned = fit_contrastive(base_encoder, tokenizer, [rows[i] for i in train], seed * 100 + fold, recipe)
        reader = SentenceEncoder(tuned.merge_and_unload(), tokenizer)
        embedded = reader.embed(texts)
        head = fit_head(CONTRASTIVE, embedded[train], labels[train], seed)
        logits[test] = head.logits(embedded[test])
        log.info("contrastive seed %d fold %d done", seed, fold)
    return out_of_fold_result(seed, logits, rows, short_limit)


def train_contrastive_head(
    base_model: str,
    rows: Sequence[Row],
    output: Path,
    seed: int,
    recipe: ContrastiveRecipe = ContrastiveRecipe(),
) -> None:
    """Fit G on the whole pool; save its LoRA adapter (crisis_adapter/) and head into ``output``."""
    from inference.risk.features import load_encoder

    encoder, tokenizer = load_encoder(base_model)
    tuned = fit_contrastive(encoder, tokenizer, rows, seed, recipe)
    contrastive.save_adapter(tuned, output / "crisis_adapter", base_model)
    reader = SentenceEncoder(tuned.merge_and_unload(), tokenizer)
    embedded = reader.embed([head_text(row.text) for row in rows])
    head = fit_head(CONTRASTIVE, embedded, np.array([row.label for row in rows]), seed)
    config = replace(head.config, base_model=base_model, adapter="crisis_adapter")
    CrisisHead(config, head.tensors).save(output)
