"""Read the empathy CSVs (Sharma et al. 2020 format) and split them into train/dev by seeker post."""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sp_id", "seeker_post", "response_post", "level")


class DataError(ValueError):
    """An empathy CSV is missing, malformed, or has labels outside 0/1/2."""


@dataclass(frozen=True)
class EmpathyRow:
    sp_id: str
    rp_id: str
    seeker_post: str
    response_post: str
    level: int
    rationales: str


def read_rows(path: str | os.PathLike[str]) -> list[EmpathyRow]:
    """All rows of one mechanism's CSV; errors name the file and line, never the text."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file {file} does not exist")
    csv.field_size_limit(10_000_000)
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{file} lacks the column(s) {', '.join(missing)}")
        rows = []
        for line, record in enumerate(reader, start=2):
            try:
                level = int(float(record["level"]))
            except (TypeError, ValueError) as exc:
                raise DataError(f"{file}:{line}: level is not a number") from exc
            if level not in (0, 1, 2):
                raise DataError(f"{file}:{line}: level {level} is not 0, 1 or 2")
            seeker, response = record["seeker_post"] or "", record["response_post"] or ""
            if not seeker.strip() or not response.strip():
                log.warning("%s:%d: empty seeker post or response, skipped", file, line)
                continue
            rows.append(
                EmpathyRow(
                    sp_id=record["sp_id"],
                    rp_id=record.get("rp_id") or "",
                    seeker_post=seeker,
                    response_post=response,
                    level=level,
                    rationales=record.get("rationales") or "",
                )
            )
    if not rows:
        raise DataError(f"{file} has no rows")
    return rows


def split_by_seeker(
    rows: Sequence[EmpathyRow], *, dev_fraction: float = 0.15, seed: int = 42
) -> tuple[list[EmpathyRow], list[EmpathyRow]]:
    """(train, dev): a seeker post and all its responses land on one side only.

    The split depends only on the set of sp_ids and the seed, so ER, IP and EX (the same pairs) split alike.
    """
    if not 0 < dev_fraction < 1:
        raise ValueError("dev_fraction must be between 0 and 1")
    ids = sorted({row.sp_id for row in rows})
    random.Random(seed).shuffle(ids)
    dev_ids = set(ids[: max(1, round(len(ids) * dev_fraction))])
    train = [row for row in rows if row.sp_id not in dev_ids]
    dev = [row for row in rows if row.sp_id in dev_ids]
    return train, dev


def level_counts(rows: Iterable[EmpathyRow]) -> list[int]:
    counts = [0, 0, 0]
    for row in rows:
        counts[row.level] += 1
    return counts
