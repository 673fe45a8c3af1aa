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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import torch

__all__ = ["dataset_chunks", "num_dataset_chunks", "DatasetGroupedSampler", "DatasetRepeatSampler"]


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
    """TRL's ``RepeatSampler`` with every generation batch drawn from one dataset.

    Chunks of ``batch_size`` prompts come from :func:`dataset_chunks` (instead of TRL's dropping of the short last
    chunk); each chunk is repeated ``repeat_count`` times and each index ``mini_repeat_count`` times in a row, as in
    TRL. As in TRL, the random generator is seeded once and advances with each pass (a new order every epoch).
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = 0,
    ):
        self.groups = list(groups)
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[int]:
        for chunk in dataset_chunks(self.groups, self.batch_size, self.rng if self.shuffle else None):
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        n_chunks = num_dataset_chunks(self.groups, self.batch_size)
        return n_chunks * self.batch_size * self.mini_repeat_count * self.repeat_count
