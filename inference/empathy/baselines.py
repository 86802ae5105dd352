"""Baselines measured in the same run as each model: the majority level, and TF-IDF + logistic regression."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from inference.empathy.data import EmpathyRow
from inference.empathy.metrics import accuracy, macro_f1

log = logging.getLogger(__name__)


def majority_baseline(train: Sequence[EmpathyRow], dev: Sequence[EmpathyRow]) -> dict[str, float]:
    """Always the most common training level."""
    majority = Counter(row.level for row in train).most_common(1)[0][0]
    gold = [row.level for row in dev]
    predicted = [majority] * len(dev)
    return {
        "accuracy": round(accuracy(gold, predicted), 4),
        "macro_f1": round(macro_f1(gold, predicted), 4),
        "n": len(dev),
    }


def tfidf_baseline(
    train: Sequence[EmpathyRow], dev: Sequence[EmpathyRow], *, seed: int = 42
) -> dict[str, float]:
    """Word 1-2-gram TF-IDF of the response only, logistic regression with balanced class weights."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    # min_df=2 drops one-off words on real data; tiny made-up sets keep every word.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(train) >= 50 else 1, sublinear_tf=True)
    features = vectorizer.fit_transform([row.response_post for row in train])
    classifier = LogisticRegression(max_iter=2000, class_weight="balanced", C=4.0, random_state=seed)
    classifier.fit(features, [row.level for row in train])
    predicted = [int(x) for x in classifier.predict(vectorizer.transform([row.response_post for row in dev]))]
    gold = [row.level for row in dev]
    return {
        "accuracy": round(accuracy(gold, predicted), 4),
        "macro_f1": round(macro_f1(gold, predicted), 4),
        "n": len(dev),
    }
