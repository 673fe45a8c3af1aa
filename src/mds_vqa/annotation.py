"""A simulated annotator: reveals the held-out MOS of the selected videos only, optionally with rater noise.

This is how the paper's protocol is reproduced on a labelled dataset: the pool's MOS stays hidden from scoring and
selection, and the annotator hands back the MOS of exactly the videos sent to it, logging the budget spent.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .data import POOL_FEATURES

__all__ = ["SimulatedAnnotator", "hide_mos"]

HIDDEN_COLUMNS = ("mos", "mos_std", "mos_raw")


def hide_mos(ds: Dataset) -> Dataset:
    """The pool without its MOS columns (what scoring and selection may see)."""
    return ds.remove_columns([c for c in HIDDEN_COLUMNS if c in ds.column_names])


class SimulatedAnnotator:
    """Answers annotation requests from an oracle pool (a labelled pool Dataset).

    Args:
        oracle: pool Dataset with ``video_id`` and ``mos`` (the held-out labels).
        noise_std: std of Gaussian rater noise added to each revealed MOS (on the oracle's scale).
        seed: seed of the noise. A video's noise depends only on ``seed`` and its id, so two annotators with one
            seed (e.g. one per strategy when strategies are compared) give a video the same label.
        log_path: a JSON-lines file where each request is logged (ids, budget spent so far).
    """

    def __init__(
        self,
        oracle: Dataset,
        *,
        noise_std: float = 0.0,
        seed: int = 0,
        log_path: str | os.PathLike | None = None,
        id_column: str = "video_id",
    ):
        for col in (id_column, "mos"):
            if col not in oracle.column_names:
                raise KeyError(f"The oracle pool needs a {col!r} column (columns: {oracle.column_names})")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        ids = list(oracle[id_column])
        if len(set(ids)) != len(ids):
            raise ValueError("The oracle pool has duplicate video ids.")
        self._oracle = oracle
        self._row = {vid: i for i, vid in enumerate(ids)}
        self.id_column = id_column
        self.noise_std = noise_std
        self.seed = seed
        self.log_path = Path(log_path) if log_path is not None else None
        self.revealed: list[str] = []

    def rater_noise(self, video_id: str) -> float:
        """The rater noise of ``video_id``: drawn from a generator seeded by ``seed`` and the id's CRC-32."""
        rng = np.random.default_rng([self.seed, zlib.crc32(str(video_id).encode())])
        return float(rng.normal(0.0, self.noise_std))

    @property
    def spent(self) -> int:
        """Videos annotated so far (the budget spent)."""
        return len(self.revealed)

    def annotate(self, video_ids: Iterable[str], *, note: str = "") -> Dataset:
        """The pool rows of ``video_ids`` with their MOS revealed (+ noise). Raises for an unknown id or a video
        annotated before (a budget must never be spent twice on one video)."""
        video_ids = list(video_ids)
        unknown = [v for v in video_ids if v not in self._row]
        if unknown:
            raise KeyError(f"Not in the oracle pool: {unknown[:10]}{' …' if len(unknown) > 10 else ''}")
        again = sorted(set(video_ids) & set(self.revealed))
        if again or len(set(video_ids)) != len(video_ids):
            raise ValueError(
                f"Videos requested twice: {again or sorted(v for v in video_ids if video_ids.count(v) > 1)}"
            )
        rows: list[dict[str, Any]] = []
        for vid in video_ids:
            row = self._oracle[self._row[vid]]
            mos = float(row["mos"])
            if self.noise_std > 0:
                mos += self.rater_noise(vid)
            std = row.get("mos_std")
            rows.append(
                {
                    "video_id": vid,
                    "video": row["video"],
                    "mos": mos,
                    "mos_std": None if std is None or (isinstance(std, float) and math.isnan(std)) else float(std),
                    "dataset": row["dataset"],
                    "split": "train",
                }
            )
        self.revealed.extend(video_ids)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(
                    json.dumps(
                        {"note": note, "requested": len(video_ids), "spent": self.spent, "video_ids": video_ids}
                    )
                    + "\n"
                )
        return (
            Dataset.from_list(rows, features=POOL_FEATURES)
            if rows
            else Dataset.from_dict({k: [] for k in POOL_FEATURES}, features=POOL_FEATURES)
        )
