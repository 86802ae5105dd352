"""A transparent word-level (TF-IDF + logistic regression) logit added to the encoder head's for chosen labels.

Why: the frozen MiniLM head reads *how* a post is written; a bag of words reads *what* it names (deadlines,
rent, exams, sleep). On the Dreaddit/DepSeverity dev split the two views disagree often enough that their sum
is better than either (see the model card), while the artefact stays a few hundred kB of plain JSON: a
vocabulary, idf weights and one coefficient row per label. Nothing here is pickled and nothing executes code
from the model folder.

The transform is sklearn's ``TfidfVectorizer`` defaults with ``sublinear_tf=True`` (lower-case, tokens of two
or more word characters, 1 + log tf, smoothed idf, l2 norm) re-implemented in a few lines so that loading needs
no sklearn objects; a test checks it against sklearn itself.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LEXICAL_FILE = "risk_lexical.json"
LEXICAL_FORMAT = "peercare-risk-lexical-v1"
# sklearn's default token_pattern: words of two or more "word" characters, Unicode-aware.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class LexicalHead:
    """One TF-IDF logistic-regression logit per label in ``labels``."""

    labels: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: np.ndarray  # (V,)
    coef: np.ndarray  # (len(labels), V)
    intercept: np.ndarray  # (len(labels),)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Dense (n, V) TF-IDF rows; fine for the handful of texts in one inference batch."""
        rows = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float64)
        for row, text in enumerate(texts):
            counts = Counter(token for token in _TOKEN.findall(text.lower()) if token in self.vocabulary)
            for token, count in counts.items():
                column = self.vocabulary[token]
                rows[row, column] = (1.0 + math.log(count)) * self.idf[column]
            norm = np.linalg.norm(rows[row])
            if norm > 0:
                rows[row] /= norm
        return rows

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(n, len(labels)) decision values, the same as sklearn's ``decision_function``."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return (self.features(texts) @ self.coef.T + self.intercept).astype(np.float32)

    # -- files -------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        ordered = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {
            "format": LEXICAL_FORMAT,
            "labels": list(self.labels),
            "tokens": ordered,
            "idf": [round(float(v), 6) for v in self.idf],
            "coef": [[round(float(v), 6) for v in row] for row in self.coef],
            "intercept": [round(float(v), 6) for v in self.intercept],
        }

    def save(self, folder: Path) -> Path:
        path = Path(folder) / LEXICAL_FILE
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: dict) -> LexicalHead:
        if data.get("format") != LEXICAL_FORMAT:
            raise ValueError(f"not a {LEXICAL_FORMAT} file (format {data.get('format')!r})")
        tokens = list(data["tokens"])
        idf = np.asarray(data["idf"], dtype=np.float64)
        coef = np.asarray(data["coef"], dtype=np.float64).reshape(len(data["labels"]), len(tokens))
        if idf.shape != (len(tokens),):
            raise ValueError("idf and tokens differ in length")
        return cls(
            labels=tuple(data["labels"]),
            vocabulary={token: index for index, token in enumerate(tokens)},
            idf=idf,
            coef=coef,
            intercept=np.asarray(data["intercept"], dtype=np.float64),
        )

    @classmethod
    def load(cls, folder: Path) -> LexicalHead | None:
        """The folder's lexical head, or None when the model has none."""
        path = Path(folder) / LEXICAL_FILE
        if not path.is_file():
            return None
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def fit_lexical_head(
    texts: Sequence[str],
    labels: np.ndarray,
    weights: np.ndarray,
    label_names: Sequence[str],
    *,
    min_df: int = 2,
    max_features: int = 20000,
    c: float = 1.0,
) -> LexicalHead:
    """One balanced logistic regression per label over a shared TF-IDF vocabulary.

    ``labels[i, j]`` is -1 where text i carries no label j (those rows are left out for that label); ``weights``
    are per-cell sample weights. Deterministic (lbfgs, no sampling), so no seed is needed.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = list(texts)
    labelled = (labels >= 0).any(axis=1)
    vectoriser = TfidfVectorizer(min_df=min_df, sublinear_tf=True, max_features=max_features)
    vectoriser.fit([text for text, keep in zip(texts, labelled, strict=True) if keep])
    matrix = vectoriser.transform(texts)
    coef, intercept = [], []
    for column, name in enumerate(label_names):
        rows = np.flatnonzero(labels[:, column] >= 0)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
        model.fit(matrix[rows], labels[rows, column], sample_weight=weights[rows, column])
        coef.append(model.coef_[0])
        intercept.append(model.intercept_[0])
        log.info("lexical head for %s: %d rows", name, len(rows))
    return LexicalHead(
        labels=tuple(label_names),
        vocabulary={token: int(index) for token, index in vectoriser.vocabulary_.items()},
        idf=np.asarray(vectoriser.idf_, dtype=np.float64),
        coef=np.asarray(coef, dtype=np.float64),
        intercept=np.asarray(intercept, dtype=np.float64),
    )
