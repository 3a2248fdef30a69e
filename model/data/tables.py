"""Per-id feature tables built from a dataset, and the vocabularies of its ids.

Side features are looked up by id inside the model: a served model needs only the ids.
Row 0 of every table is the unknown id. Vocabulary thresholds keep ids seen fewer than
``min_count`` training rows out of the id vocabulary (they share the out-of-vocabulary row).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from steadyrank.model.data.interactions import Interactions

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
# The columns of FeatureTables.user_codes. This is the model's internal layout (checkpoints
# and warm starts depend on it), not the signature's order, which is layout.USER_FEATURES.
USER_CODE_COLUMNS = ("gender", "occupation", "age", "zip")


def _counts(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How many of ``rows`` hold each of ``ids``."""
    found, counts = np.unique(rows, return_counts=True)
    out = np.zeros(len(ids), np.int64)
    pos = np.searchsorted(found, ids)
    hit = (pos < len(found)) & (found[np.minimum(pos, len(found) - 1)] == ids)
    out[hit] = counts[pos[hit]]
    return out


def vocabulary(ids: np.ndarray, counts: np.ndarray | None, min_count: int) -> np.ndarray:
    """The ids that get their own embedding row: all, or those seen >= ``min_count`` times
    (the rest share the out-of-vocabulary row, as production vocabularies do)."""
    if min_count <= 1 or counts is None:
        return ids
    return ids[counts >= min_count]


def _codes(values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes 1..K over the sorted distinct values (0 is kept for out-of-vocabulary)."""
    vocab = tuple(sorted({str(v) for v in values}))
    index = {v: i + 1 for i, v in enumerate(vocab)}
    return np.array([index[str(v)] for v in values], np.int64), vocab


@dataclass(frozen=True)
class FeatureTables:
    """Side-feature tables keyed by raw id; row 0 of every table is the unknown id.

    User codes: gender, occupation and zip prefix (first digit) are 1..K over the sorted
    vocabularies in ``user_vocabs``; age is its bucket in ``AGE_BUCKETS`` plus 1.
    """

    user_ids: np.ndarray
    user_codes: np.ndarray  # [n_users + 1, 4], columns USER_CODE_COLUMNS
    user_vocabs: tuple[tuple[str, ...], ...]  # gender, occupation, zip prefix
    item_ids: np.ndarray
    item_genres: np.ndarray  # [n_items + 1, n_genres] multi-hot
    item_year: np.ndarray  # [n_items + 1] year code
    year_vocab_size: int
    genres: tuple[str, ...]
    # Training rows per id, aligned with user_ids / item_ids (for vocabulary thresholds);
    # None when unknown (every id then gets its own embedding row).
    user_counts: np.ndarray | None = None
    item_counts: np.ndarray | None = None

    def with_counts(self, user_id: np.ndarray, item_id: np.ndarray) -> FeatureTables:
        """These tables with the per-id row counts of the given (training) rows."""
        return replace(self, user_counts=_counts(self.user_ids, user_id),
                       item_counts=_counts(self.item_ids, item_id))

    @property
    def user_vocab_sizes(self) -> tuple[int, ...]:
        """Embedding rows per user feature column (including the unknown row 0)."""
        gender, occupation, zip_prefix = self.user_vocabs
        return (len(gender) + 1, len(occupation) + 1, len(AGE_BUCKETS) + 2, len(zip_prefix) + 1)

    @classmethod
    def from_data(cls, data: Interactions) -> FeatureTables:
        """Builds the tables from a dataset's user and item side features."""
        gender, gender_vocab = _codes(data.users["gender"])
        occupation, occupation_vocab = _codes(data.users["occupation"])
        zip_prefix, zip_vocab = _codes(np.array([str(z)[:1] for z in data.users["zip"]]))
        age = np.digitize(data.users["age"], AGE_BUCKETS) + 1
        user_codes = np.zeros((len(data.user_ids) + 1, len(USER_CODE_COLUMNS)), np.int64)
        columns = {"gender": gender, "occupation": occupation, "age": age, "zip": zip_prefix}
        user_codes[1:] = np.stack([columns[c] for c in USER_CODE_COLUMNS], axis=1)
        item_genres = np.zeros((len(data.item_ids) + 1, len(data.genres)), np.float32)
        item_genres[1:] = data.item_genres
        year_codes, year_vocab = _codes(data.items["year"] // 5 * 5)  # 5-year buckets
        return cls(
            user_ids=data.user_ids, user_codes=user_codes,
            user_vocabs=(gender_vocab, occupation_vocab, zip_vocab),
            item_ids=data.item_ids, item_genres=item_genres,
            item_year=np.concatenate([[0], year_codes]), year_vocab_size=len(year_vocab) + 1,
            genres=tuple(data.genres))
