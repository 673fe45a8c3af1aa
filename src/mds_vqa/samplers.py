"""Samplers that keep every batch within one dataset, for the failure predictor g and for GRPO.

Both use one chunking rule (:func:`dataset_chunks`): each dataset's indices are (shuffled and) cut into chunks of
exactly ``chunk_size``; a short last chunk is filled with other indices of the same dataset, drawn without replacement
when the dataset has at least ``chunk_size`` videos, and with repeats (each video as evenly as possible) only when it
has fewer; the chunks are then (shuffled and) concatenated. Every chunk is one dataset, so a batch stays one dataset as
long as the chunk is exactly the batch the trainer forms:

- ``transformers.Trainer`` builds its train DataLoader with ``batch_size = per_device_train_batch_size`` and accelerate
  (``split_batches=False``) deals whole DataLoader batches to the processes round-robin, so
  :class:`DatasetGroupedSampler` needs ``batch_size`` = the per-device train batch size;
- TRL's ``GRPOTrainer`` loads per-process generation batches of ``per_device_train_batch_size × steps_per_generation``
  rows, and one generation batch of the whole run is ``generation_batch_size`` rows: :class:`DatasetRepeatSampler`
  takes ``batch_size = generation_batch_size // num_generations`` prompts, as TRL's ``RepeatSampler`` does.

**Pairs.** Rows from a pair Dataset come two by two (one prompt per video of the pair, with a shared ``pair_id``; see
:mod:`mds_vqa.pair_prompts`), and the Thurstone reward compares a pair prompt only with the other prompt of its pair
(:mod:`mds_vqa.rewards`), so both must land in one generation batch. :func:`grouped_chunks` therefore treats a pair as
one unit of two rows: the rows without a pair id are chunked as above, the pairs are chunked by the same rule into
chunks of ``chunk_size // 2`` pairs (a chunk of pairs holds both rows of each, side a first, and never a MOS row), and
the two kinds of chunks are shuffled together. A generation batch is therefore either MOS prompts of one dataset or
whole pairs of one dataset, and ``chunk_size`` must be even when there are pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "dataset_chunks",
    "num_dataset_chunks",
    "grouped_chunks",
    "num_grouped_chunks",
    "DatasetGroupedSampler",
    "DatasetRepeatSampler",
]


def _fill(idx: np.ndarray, chunk: np.ndarray, need: int, rng: np.random.Generator | None) -> np.ndarray:
    """``need`` indices of the dataset ``idx`` to complete its short last ``chunk``."""
    if len(idx) >= len(chunk) + need:  # enough other videos: no repeats
        others = idx[: len(idx) - len(chunk)]
        return rng.choice(others, size=need, replace=False) if rng is not None else others[:need]
    # fewer videos than a chunk (the chunk is the whole dataset): repeat each as evenly as possible
    rounds = -(-need // len(idx))
    pool = np.concatenate([rng.permutation(idx) if rng is not None else idx for _ in range(rounds)])
    return pool[:need]


def dataset_chunks(
    groups: Sequence[Hashable], chunk_size: int, rng: np.random.Generator | None = None
) -> list[list[int]]:
    """Indices of ``groups`` cut into chunks of exactly ``chunk_size`` indices of one group each (module docstring).

    Args:
        groups: the group (dataset name) of every row.
        chunk_size: indices per chunk.
        rng: shuffles each group, the fill and the order of the chunks; ``None``: groups in order of first appearance,
            each in index order, filled with its first indices.

    Returns:
        ``ceil(n_g / chunk_size)`` chunks per group ``g`` of ``n_g`` rows.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    positions: dict[Hashable, list[int]] = {}
    for i, name in enumerate(groups):
        positions.setdefault(name, []).append(i)
    chunks = []
    for members in positions.values():
        idx = np.asarray(members)
        if rng is not None:
            idx = rng.permutation(idx)
        for k in range(0, len(idx), chunk_size):
            chunk = idx[k : k + chunk_size]
            if len(chunk) < chunk_size:
                chunk = np.concatenate([chunk, _fill(idx, chunk, chunk_size - len(chunk), rng)])
            chunks.append([int(i) for i in chunk])
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def num_dataset_chunks(groups: Sequence[Hashable], chunk_size: int) -> int:
    """How many chunks :func:`dataset_chunks` returns."""
    return sum(-(-n // chunk_size) for n in Counter(groups).values())


def _pair_units(groups: Sequence[Hashable], pair_ids: Sequence[Hashable | None], chunk_size: int) -> list[list[int]]:
    """The rows of each pair (in row order), checked: two rows per pair id, one dataset, an even ``chunk_size``."""
    if chunk_size % 2:
        raise ValueError(
            f"A generation batch of {chunk_size} prompts cannot hold whole pairs: make generation_batch_size // "
            "num_generations even."
        )
    units: dict[Hashable, list[int]] = {}
    for i, key in enumerate(pair_ids):
        if key is not None:
            units.setdefault(key, []).append(i)
    odd = [k for k, rows in units.items() if len(rows) != 2]
    if odd:
        raise ValueError(f"Every pair id must name exactly two rows; these do not: {odd[:10]}")
    mixed = [k for k, (a, b) in units.items() if groups[a] != groups[b]]
    if mixed:
        raise ValueError(f"The two rows of a pair must be of one dataset; these are not: {mixed[:10]}")
    return list(units.values())


def grouped_chunks(
    groups: Sequence[Hashable],
    chunk_size: int,
    rng: np.random.Generator | None = None,
    pair_ids: Sequence[Hashable | None] | None = None,
) -> list[list[int]]:
    """:func:`dataset_chunks` of the rows without a pair id, and chunks of whole pairs (module docstring).

    Without pair ids (``None``, or all ``None``) this is exactly :func:`dataset_chunks`."""
    if pair_ids is None or all(k is None for k in pair_ids):
        return dataset_chunks(groups, chunk_size, rng)
    if len(pair_ids) != len(groups):
        raise ValueError(f"{len(pair_ids)} pair ids for {len(groups)} rows")
    units = _pair_units(groups, pair_ids, chunk_size)
    single = [i for i, key in enumerate(pair_ids) if key is None]
    chunks = [[single[j] for j in c] for c in dataset_chunks([groups[i] for i in single], chunk_size, rng)]
    for c in dataset_chunks([groups[u[0]] for u in units], chunk_size // 2, rng):
        chunks.append([i for u in c for i in units[u]])
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def num_grouped_chunks(
    groups: Sequence[Hashable], chunk_size: int, pair_ids: Sequence[Hashable | None] | None = None
) -> int:
    """How many chunks :func:`grouped_chunks` returns."""
    if pair_ids is None or all(k is None for k in pair_ids):
        return num_dataset_chunks(groups, chunk_size)
    units = _pair_units(groups, pair_ids, chunk_size)
    single = [groups[i] for i, key in enumerate(pair_ids) if key is None]
    return num_dataset_chunks(single, chunk_size) + num_dataset_chunks([groups[u[0]] for u in units], chunk_size // 2)


class DatasetGroupedSampler(torch.utils.data.Sampler[int]):
    """Every consecutive ``batch_size`` indices come from one dataset (chunks of :func:`dataset_chunks`).

    The order depends on ``seed`` and the epoch only (as with ``DistributedSampler``), so every process draws the same
    order; the Trainer calls :meth:`set_epoch` to reshuffle each epoch. ``batch_size`` must be the DataLoader's batch
    size, i.e. the per-device train batch size.
    """

    def __init__(self, groups: Sequence[Hashable], batch_size: int, seed: int = 0):
        self.groups = list(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (changes the shuffle)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return num_dataset_chunks(self.groups, self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for chunk in dataset_chunks(self.groups, self.batch_size, rng):
            yield from chunk


class DatasetRepeatSampler(torch.utils.data.Sampler[int]):
    """TRL's ``RepeatSampler`` with every generation batch drawn from one dataset, pairs kept whole.

    Chunks of ``batch_size`` prompts come from :func:`grouped_chunks` (instead of TRL's dropping of the short last
    chunk); each chunk is repeated ``repeat_count`` times and each index ``mini_repeat_count`` times in a row, as in
    TRL. As in TRL, the random generator is seeded once and advances with each pass (a new order every epoch).
    ``pair_ids`` (one per row, ``None`` for a MOS row) keeps the two rows of each pair in one generation batch.
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = 0,
        pair_ids: Sequence[Hashable | None] | None = None,
    ):
        self.groups = list(groups)
        self.pair_ids = list(pair_ids) if pair_ids is not None else None
        num_grouped_chunks(self.groups, batch_size, self.pair_ids)  # checks the pairs now, not at the first batch
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[int]:
        for chunk in grouped_chunks(self.groups, self.batch_size, self.rng if self.shuffle else None, self.pair_ids):
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        n_chunks = num_grouped_chunks(self.groups, self.batch_size, self.pair_ids)
        return n_chunks * self.batch_size * self.mini_repeat_count * self.repeat_count
