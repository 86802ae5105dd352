"""Load the public risk datasets (SDCNL, Dreaddit joined with DepSeverity, Reddit C-SSRS) into one labelled table.

Parity traps handled here (see each SOURCE.md):
- SDCNL and Dreaddit keep the authors' train/test split; the dev split for early stopping and calibration is
  carved out of train only (deterministic hash of the post id with the seed, so it is the same on every machine).
- DepSeverity has no split: its texts are the Dreaddit segments, joined on whitespace/case-normalised text, so
  each row takes Dreaddit's split. A normalised text that DepSeverity labels twice with conflicting binary
  labels is left unlabelled for depression (masked), never guessed.
- Dreaddit rows from the same post stay together on one side of the dev split (grouped by post_id).
- 3 normalised texts occur in both Dreaddit train and test: their train copies are dropped from training so
  nothing the test split holds is learned (the test split itself is kept whole, for parity with the authors).

Two additions that are NOT gold labels (each documented in the model card, each with its own loss weight):
- Silver negatives for ``suicidal``: Dreaddit posts (stress/anxiety/relationship/housing subreddits, none of them
  r/SuicideWatch or r/depression) count as not-suicidal. Without them the suicidal head only ever saw
  depression posts as negatives and fired on any everyday distress. Silver cells never enter the
  temperature fit, the decision cut-offs or the SDCNL evaluation.
- ``chat_style_training.csv``: 85 short chat messages written for PeerCare (crises, hyperbole, supportive
  replies that mention hotlines, recovery stories, everyday stress) labelled for ``suicidal`` only.
  They are disjoint from the Discord-style regression set, which is never trained on.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RISK_LABELS: tuple[str, ...] = ("suicidal", "depression", "stress")
UNLABELLED = -1
DEFAULT_DATA_DIR = Path(os.environ.get("PEERCARE_DATA_DIR", "/work/shared/data"))
CHAT_STYLE_FILE = Path(__file__).resolve().parent / "data" / "chat_style_training.csv"

# DepSeverity severity -> binary depression (Mental-LLM's binary task: minimum vs mild/moderate/severe).
_DEPRESSION_BINARY = {"minimum": 0, "mild": 1, "moderate": 1, "severe": 1}
# C-SSRS levels that mean a user is at risk (Ideation/Behavior/Attempt) vs not (Supportive/Indicator).
CSSRS_AT_RISK = {"Ideation": 1, "Behavior": 1, "Attempt": 1, "Supportive": 0, "Indicator": 0}


class DataMissing(FileNotFoundError):
    """A dataset file is not where it should be; the message says which file and which setting to change."""


@dataclass
class RiskTable:
    """Texts with a label matrix (``UNLABELLED`` where a dataset says nothing about a label)."""

    texts: list[str]
    labels: np.ndarray  # (n, len(label_names)) int8
    label_names: tuple[str, ...]
    split: np.ndarray  # "train" / "dev" / "test"
    source: np.ndarray  # "sdcnl" / "dreaddit" / "chat"
    group: np.ndarray  # post id: rows of one post stay on one side of a split
    weights: np.ndarray  # (n, labels) float32 loss weight per cell (0 where unlabelled)
    silver: np.ndarray  # (n, labels) bool: an assumed label, not an annotator's

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, mask: np.ndarray) -> RiskTable:
        index = np.flatnonzero(mask)
        return RiskTable(
            [self.texts[i] for i in index],
            self.labels[index],
            self.label_names,
            self.split[index],
            self.source[index],
            self.group[index],
            self.weights[index],
            self.silver[index],
        )

    def column(self, label: str) -> np.ndarray:
        return self.labels[:, self.label_names.index(label)]


def normalise_text(text: str) -> str:
    """The join key of Dreaddit and DepSeverity: whitespace collapsed, case folded."""
    return " ".join(str(text).split()).casefold()


def in_dev(group: str, *, seed: int, share: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _read_csv(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DataMissing(
            f"{path} is missing (set --data-dir or PEERCARE_DATA_DIR to the shared data folder)"
        )
    return pd.read_csv(path)


def load_sdcnl(data_dir: Path = DEFAULT_DATA_DIR) -> list[tuple[str, int, str, str]]:
    """``(text, is_suicide, split, group)``; text = title + raw selftext (Discord text is raw, not cleaned)."""
    rows = []
    for split, name in (("train", "training-set.csv"), ("test", "testing-set.csv")):
        frame = _read_csv(Path(data_dir) / "sdcnl" / name)
        for orig_index, title, body, label in zip(
            frame["orig_index"], frame["title"], frame["selftext"], frame["is_suicide"], strict=True
        ):
            text = "\n".join(part for part in (str(title or "").strip(), _str(body)) if part)
            rows.append((text, int(label), split, f"sdcnl-{split}-{orig_index}"))
    return rows


def _str(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()


def load_dreaddit_depseverity(data_dir: Path = DEFAULT_DATA_DIR) -> list[tuple[str, int, int, str, str]]:
    """``(text, stress, depression or UNLABELLED, split, post_id)`` for every Dreaddit row, in file order."""
    severity = _read_csv(Path(data_dir) / "depseverity" / "Reddit_depression_dataset.csv")
    by_text: dict[str, set[int]] = {}
    for text, label in zip(severity["text"], severity["label"], strict=True):
        by_text.setdefault(normalise_text(text), set()).add(_DEPRESSION_BINARY[str(label).strip()])
    rows = []
    unmatched = conflicting = 0
    for split, name in (("train", "dreaddit-train.csv"), ("test", "dreaddit-test.csv")):
        frame = _read_csv(Path(data_dir) / "dreaddit" / name)
        for text, stress, post_id in zip(frame["text"], frame["label"], frame["post_id"], strict=True):
            found = by_text.get(normalise_text(text))
            if found is None:
                unmatched += 1
                depression = UNLABELLED
            elif len(found) > 1:
                conflicting += 1
                depression = UNLABELLED
            else:
                depression = next(iter(found))
            rows.append((str(text), int(stress), depression, split, f"dreaddit-{post_id}"))
    log.info(
        "dreaddit x depseverity: %d rows, %d unmatched, %d conflicting", len(rows), unmatched, conflicting
    )
    return rows


def load_chat_style(path: Path = CHAT_STYLE_FILE) -> list[tuple[str, int]]:
    import pandas as pd

    frame = pd.read_csv(path)
    return [(str(text), int(label)) for text, label in zip(frame["text"], frame["suicidal"], strict=True)]


def load_risk_table(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    seed: int = 13,
    dev_share: float = 0.15,
    silver_weight: float = 0.5,
    chat_weight: float = 3.0,
) -> RiskTable:
    """SDCNL + Dreaddit/DepSeverity (+ silver suicidal negatives and the chat-style rows) with train/dev/test."""
    names = RISK_LABELS
    texts: list[str] = []
    labels: list[list[int]] = []
    splits: list[str] = []
    sources: list[str] = []
    groups: list[str] = []
    weights: list[list[float]] = []
    silver: list[list[bool]] = []

    def add(
        text: str,
        values: dict[str, int],
        split: str,
        source: str,
        group: str,
        *,
        weight: float = 1.0,
        silver_values: dict[str, int] | None = None,
    ) -> None:
        if split == "train" and in_dev(group, seed=seed, share=dev_share):
            split = "dev"
        silver_values = silver_values or {}
        texts.append(text)
        labels.append([values.get(name, silver_values.get(name, UNLABELLED)) for name in names])
        weights.append(
            [weight if name in values else silver_weight if name in silver_values else 0.0 for name in names]
        )
        silver.append([name not in values and name in silver_values for name in names])
        splits.append(split)
        sources.append(source)
        groups.append(group)

    for text, is_suicide, split, group in load_sdcnl(data_dir):
        add(text, {"suicidal": is_suicide}, split, "sdcnl", group)
    dreaddit = load_dreaddit_depseverity(data_dir)
    test_texts = {normalise_text(text) for text, _, _, split, _ in dreaddit if split == "test"}
    dropped = 0
    for text, stress, depression, split, group in dreaddit:
        if split == "train" and normalise_text(text) in test_texts:
            dropped += 1
            continue
        gold = (
            {"stress": stress} if depression == UNLABELLED else {"stress": stress, "depression": depression}
        )
        add(
            text,
            gold,
            split,
            "dreaddit",
            group,
            silver_values={"suicidal": 0} if silver_weight > 0 else None,
        )
    log.info("dropped %d dreaddit train rows whose text is also in the test split", dropped)
    if chat_weight > 0:
        for index, (text, suicidal) in enumerate(load_chat_style()):
            add(text, {"suicidal": suicidal}, "train", "chat", f"chat-{index}", weight=chat_weight)
    return RiskTable(
        texts,
        np.asarray(labels, dtype=np.int8),
        names,
        np.asarray(splits),
        np.asarray(sources),
        np.asarray(groups),
        np.asarray(weights, dtype=np.float32),
        np.asarray(silver, dtype=bool),
    )


def load_cssrs_users(data_dir: Path = DEFAULT_DATA_DIR) -> list[tuple[list[str], str]]:
    """``(posts, C-SSRS level)`` per user; truncated cells are cut at the last complete post (see SOURCE.md)."""
    frame = _read_csv(Path(data_dir) / "reddit_cssrs" / "500_Reddit_users_posts_labels.csv")
    users = []
    for cell, label in zip(frame["Post"], frame["Label"], strict=True):
        users.append((_parse_post_list(str(cell)), str(label).strip()))
    return users


def _parse_post_list(cell: str) -> list[str]:
    try:
        posts = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        cut = cell.rfind("', '")
        posts = ast.literal_eval(cell[:cut] + "']") if cut > 0 else []
    return [str(post) for post in posts if str(post).strip()]
