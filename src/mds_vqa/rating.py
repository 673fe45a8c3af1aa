"""Human rating sessions: the order each rater sees, the training phase and the answers file (no browser needed).

Two studies share one mechanism (:class:`Study`):

- :class:`RatingStudy`: single-stimulus ratings of a subset's videos, as in ITU-T P.910 studies: the 5-level absolute
  category rating (ACR: 5 Excellent, 4 Good, 3 Fair, 2 Poor, 1 Bad) or a 0–100 continuous slider, after a training
  phase on anchor videos;
- :class:`PairStudy`: the two-alternative forced choice (2AFC) of the gMAD pairs (which of the left/right videos
  looks better).

Each rater sees every item once, in a permutation of the items seeded by the rater id (and the study's seed): two
raters see different orders, one rater always the same one. Training items come first, in the order given. Every
answer is appended to a CSV as it is given (written, flushed and fsynced before the next item is served), and a
rater's session is read back from that file: a rater who comes back (after closing the tab, or after a restart of
the app) continues at the first item they have not answered. Nothing but the rater id is stored about a rater.

Answer files (one row per answer, a header first):

- ratings (:data:`RATINGS_FILE`): ``video_id, rater, score, phase, scale, position, time``. ``phase`` is ``training``
  (anchor videos: not counted, ``recipes/import_ratings.py`` drops them) or ``main``; ``position`` is the 1-based
  place of the video in the rater's order of that phase; ``time`` the UTC time of the answer;
- 2AFC (:data:`PAIR_ANSWERS_FILE`): ``pair_id, preferred, rater, position, time``; ``preferred`` is ``left`` or
  ``right`` as shown (the pairs' ``video_left`` / ``video_right``): the file is the ``--answers`` of
  ``recipes/gmad.py`` (:func:`mds_vqa.gmad_study.read_2afc_answers`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import MAX_LISTED

logger = logging.getLogger(__name__)

__all__ = [
    "ACR_LABELS",
    "PAIR_ANSWERS_FILE",
    "PAIR_COLUMNS",
    "RATINGS_FILE",
    "RATING_COLUMNS",
    "SCALES",
    "AnswerFile",
    "Item",
    "PairStudy",
    "RatingStudy",
    "SessionState",
    "Study",
    "anchor_items",
    "check_rater",
    "pair_study",
    "presentation_order",
    "rater_seed",
    "rating_study",
]

RATINGS_FILE = "ratings.csv"
PAIR_ANSWERS_FILE = "gmad_answers.csv"
RATING_COLUMNS = ("video_id", "rater", "score", "phase", "scale", "position", "time")
PAIR_COLUMNS = ("pair_id", "preferred", "rater", "position", "time")
SCALES = {"acr": (1.0, 5.0), "slider": (0.0, 100.0)}
ACR_LABELS = ((5, "Excellent"), (4, "Good"), (3, "Fair"), (2, "Poor"), (1, "Bad"))
TRAINING, MAIN, DONE = "training", "main", "done"
_RATER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_rater(rater: str | None) -> str:
    """The rater id, stripped; a ``ValueError`` unless it is 1–64 letters, digits, ``_``, ``.`` or ``-`` (an id, not
    a name or an e-mail address: nothing else about a rater is stored)."""
    rater = (rater or "").strip()
    if not _RATER_RE.match(rater):
        raise ValueError(
            f"Rater id {rater!r} is not valid: use 1-64 letters, digits, '_', '.' or '-' (e.g. r07), "
            "starting with a letter or digit."
        )
    return rater


def rater_seed(rater: str, seed: int = 0) -> int:
    """A stable 64-bit seed from the rater id and the study's seed (the same on every machine and run)."""
    digest = hashlib.sha256(f"{seed}:{rater}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def presentation_order(ids: Sequence[str], rater: str, seed: int = 0) -> list[str]:
    """``ids`` in the rater's order: a permutation seeded by :func:`rater_seed`."""
    perm = np.random.default_rng(rater_seed(rater, seed)).permutation(len(ids))
    return [ids[int(i)] for i in perm]


@dataclass(frozen=True)
class Item:
    """One thing a rater answers: a video (``videos`` = one path) or a pair (``videos`` = left, right)."""

    item_id: str
    videos: tuple[str, ...]


@dataclass(frozen=True)
class SessionState:
    """Where a rater stands: the phase (``training``, ``main`` or ``done``), the item to show (``None`` when done),
    how many items of this phase are answered (``done``) out of ``total``, and the main phase's counts."""

    rater: str
    phase: str
    item: Item | None
    done: int
    total: int
    main_done: int
    main_total: int

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready values (what the app's API returns)."""
        out = asdict(self)
        out["item_id"] = self.item.item_id if self.item else None
        out["videos"] = list(self.item.videos) if self.item else []
        del out["item"]
        return out


class AnswerFile:
    """An append-only CSV of answers with a fixed header. Each row is written, flushed and fsynced when added (a crash
    or a closed tab loses nothing); a lock serialises writers. Rows are indexed by ``(rater, phase)`` for resuming.

    Raises ``ValueError`` when an existing file has another header (naming the file and both headers).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], item_column: str):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.item_column = item_column
        self._lock = threading.Lock()
        self._answered: dict[tuple[str, str], list[str]] = {}
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write(self.columns)

    def _read(self) -> None:
        """Index the existing rows; a torn last line (a crash mid-write) is ended and skipped with a warning."""
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:
            with open(self.path, "a", newline="") as fh:
                fh.write("\n")
        with open(self.path, newline="") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            if header != self.columns:
                raise ValueError(
                    f"{self.path} has the columns {list(header)}, expected {list(self.columns)}: "
                    "use another output folder for this study."
                )
            for line, row in enumerate(reader, start=2):
                if len(row) != len(self.columns):
                    logger.warning("%s line %d is incomplete (%r): ignored", self.path, line, row)
                    continue
                self._index(dict(zip(self.columns, row)))

    def _index(self, row: Mapping[str, Any]) -> None:
        key = (str(row["rater"]), str(row.get("phase", MAIN)))
        self._answered.setdefault(key, []).append(str(row[self.item_column]))

    def _write(self, values: Sequence[Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow(values)
            fh.flush()
            os.fsync(fh.fileno())

    def answered(self, rater: str, phase: str = MAIN) -> list[str]:
        """The items the rater answered in ``phase``, in answer order."""
        return list(self._answered.get((rater, phase), []))

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one answer (a value for every column; other keys are not written) to disk now."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"answer {dict(row)} lacks {missing}")
        with self._lock:
            self._write([row[c] for c in self.columns])
            self._index(row)


class Study:
    """A set of items every rater answers once, in the rater's own order, after the training items.

    Subclasses say what an answer is (:meth:`_answer_values`). ``answers_path`` is the CSV every answer goes to.
    """

    kind = "study"
    item_column = "item_id"
    columns: tuple[str, ...] = ()

    def __init__(
        self, items: Sequence[Item], answers_path: str | os.PathLike, *, training: Sequence[Item] = (), seed: int = 0
    ):
        if not items:
            raise ValueError(f"The {self.kind} study has no items.")
        dups = sorted(i for i, n in Counter(it.item_id for it in items).items() if n > 1)
        if dups:
            raise ValueError(f"The {self.kind} study has duplicate ids: {dups[:MAX_LISTED]}")
        if training and "phase" not in self.columns:
            raise ValueError(f"The {self.kind} study has no training phase: its answers file has no phase column.")
        self.items = {it.item_id: it for it in items}
        self.training = list(training)
        self.seed = seed
        self.answers = AnswerFile(answers_path, self.columns, self.item_column)
        self._orders: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def order(self, rater: str) -> list[str]:
        """The rater's main-phase order of the item ids (:func:`presentation_order`)."""
        if rater not in self._orders:
            self._orders[rater] = presentation_order(list(self.items), rater, self.seed)
        return self._orders[rater]

    def state(self, rater: str) -> SessionState:
        """Where ``rater`` stands, read from the answers file: the first unanswered training item, else the first
        unanswered item of the rater's order, else done."""
        rater = check_rater(rater)
        order = self.order(rater)
        answered = set(self.answers.answered(rater, MAIN))
        main_done = sum(1 for i in order if i in answered)
        counts = {"main_done": main_done, "main_total": len(order)}
        seen = set(self.answers.answered(rater, TRAINING))
        for item in self.training:
            if item.item_id not in seen:
                done = sum(1 for it in self.training if it.item_id in seen)
                return SessionState(rater, TRAINING, item, done, len(self.training), **counts)
        for item_id in order:
            if item_id not in answered:
                return SessionState(rater, MAIN, self.items[item_id], main_done, len(order), **counts)
        return SessionState(rater, DONE, None, main_done, len(order), **counts)

    def answer(self, rater: str, item_id: str, value: Any) -> SessionState:
        """Record ``rater``'s answer to the item being shown to them, then return their next state.

        Raises ``ValueError`` for an invalid rater id or answer, an item that is not the one being shown (a double
        submission, a stale tab) or a rater who has answered everything.
        """
        rater = check_rater(rater)
        with self._lock:
            current = self.state(rater)
            if current.item is None:
                raise ValueError(f"Rater {rater!r} has answered all {current.main_total} items of this study.")
            if str(item_id) != current.item.item_id:
                raise ValueError(
                    f"Rater {rater!r}: {item_id!r} is not the item being shown ({current.item.item_id!r}); "
                    "press Start / resume to continue."
                )
            row = {
                **self._answer_values(value),
                self.item_column: current.item.item_id,
                "rater": rater,
                "phase": current.phase,
                "position": current.done + 1,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            self.answers.append(row)
        return self.state(rater)

    def _answer_values(self, value: Any) -> dict[str, Any]:
        raise NotImplementedError

    def video_folders(self) -> list[str]:
        """The folders holding the study's videos (absolute), for the app's ``allowed_paths``."""
        items = [*self.items.values(), *self.training]
        return sorted({str(Path(v).resolve().parent) for it in items for v in it.videos if v})


class RatingStudy(Study):
    """Single-stimulus ratings of videos on ``scale``: ``acr`` (integers 1–5) or ``slider`` (0–100)."""

    kind = "rating"
    item_column = "video_id"
    columns = RATING_COLUMNS

    def __init__(self, items: Sequence[Item], answers_path: str | os.PathLike, *, scale: str = "acr", **kwargs: Any):
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
        self.scale = scale
        super().__init__(items, answers_path, **kwargs)

    def _answer_values(self, value: Any) -> dict[str, Any]:
        low, high = SCALES[self.scale]
        try:
            score = float(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"The score must be a number, got {value!r}") from err
        if not (math.isfinite(score) and low <= score <= high):
            raise ValueError(f"The score must lie in [{low:g}, {high:g}] on the {self.scale} scale, got {value!r}")
        if self.scale == "acr":
            if score != round(score):
                raise ValueError(f"An ACR score is one of 1, 2, 3, 4, 5, got {value!r}")
            return {"score": int(score), "scale": self.scale}
        return {"score": round(score, 3), "scale": self.scale}


class PairStudy(Study):
    """The 2AFC study of gMAD pairs: the answer is ``left`` or ``right`` (the video that looks better)."""

    kind = "2afc"
    item_column = "pair_id"
    columns = PAIR_COLUMNS

    def _answer_values(self, value: Any) -> dict[str, Any]:
        choice = str(value).strip().lower()
        if choice not in ("left", "right"):
            raise ValueError(f"A 2AFC answer is 'left' or 'right', got {value!r}")
        return {"preferred": choice}


def _column(ds: Any, name: str, what: str) -> list[Any]:
    if name not in ds.column_names:
        raise KeyError(f"The {what} has no {name!r} column (columns: {ds.column_names})")
    return list(ds[name])


def _video_items(ds: Any, id_column: str, video_column: str, what: str) -> list[Item]:
    ids, videos = _column(ds, id_column, what), _column(ds, video_column, what)
    empty = [str(i) for i, v in zip(ids, videos) if not v]
    if empty:
        raise ValueError(f"The {what} has rows without a video path: {empty[:MAX_LISTED]}")
    return [Item(str(i), (str(v),)) for i, v in zip(ids, videos)]


def anchor_items(
    source: Any,
    *,
    anchors: Sequence[str] | None = None,
    anchor_column: str | None = None,
    num_anchors: int = 2,
    id_column: str = "video_id",
    video_column: str = "video",
    what: str = "anchor pool",
) -> list[Item]:
    """The training items: the videos of ``source`` (a Dataset) named in ``anchors``, in that order; else, with
    ``anchor_column``, ``num_anchors`` videos spread evenly over that column's range, lowest first (2: the worst and
    the best); else none. Raises ``KeyError`` naming the ids ``source`` lacks."""
    if not anchors and not anchor_column:
        return []
    items = _video_items(source, id_column, video_column, what)
    if anchors:
        by_id = {it.item_id: it for it in items}
        unknown = [a for a in anchors if str(a) not in by_id]
        if unknown:
            raise KeyError(f"Anchor video(s) not in the {what}: {unknown[:MAX_LISTED]}")
        return [by_id[str(a)] for a in anchors]
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be >= 1, got {num_anchors}")
    values = np.array([np.nan if v is None else float(v) for v in _column(source, anchor_column, what)])
    valid = np.flatnonzero(np.isfinite(values))
    if len(valid) == 0:
        raise ValueError(f"The {what}'s {anchor_column!r} column has no finite value to pick anchors by.")
    ranked = valid[np.argsort(values[valid], kind="stable")]
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, min(num_anchors, len(ranked)))).astype(int))
    return [items[int(ranked[p])] for p in picks]


def rating_study(
    subset: Any,
    answers_path: str | os.PathLike,
    *,
    scale: str = "acr",
    training: Sequence[Item] = (),
    id_column: str = "video_id",
    video_column: str = "video",
    seed: int = 0,
) -> RatingStudy:
    """The single-stimulus study of a selection Dataset (``video_id``, ``video``; e.g. from ``select_subset.py``)."""
    items = _video_items(subset, id_column, video_column, "subset")
    return RatingStudy(items, answers_path, scale=scale, training=training, seed=seed)


def pair_study(pairs: Any, answers_path: str | os.PathLike, *, seed: int = 0) -> PairStudy:
    """The 2AFC study of a gMAD pairs Dataset (``pair_id``, ``video_left``, ``video_right``; ``recipes/gmad.py``'s
    ``pairs``). Pairs of skipped levels (a non-empty ``skipped``) are left out."""
    ids = _column(pairs, "pair_id", "pairs Dataset")
    left = _column(pairs, "video_left", "pairs Dataset")
    right = _column(pairs, "video_right", "pairs Dataset")
    skipped = list(pairs["skipped"]) if "skipped" in pairs.column_names else [""] * len(ids)
    items = [Item(str(i), (str(a), str(b))) for i, a, b, s in zip(ids, left, right, skipped) if not s]
    return PairStudy(items, answers_path, seed=seed)
