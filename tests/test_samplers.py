"""Dataset-grouped samplers: every batch the trainer forms — the DataLoader's batching, then accelerate dealing whole
batches to the processes — holds videos of a single dataset."""

from collections import Counter

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

from mds_vqa.samplers import DatasetGroupedSampler, DatasetRepeatSampler, dataset_chunks, num_dataset_chunks

GROUPS = ["a"] * 7 + ["b"] * 5 + ["c"] * 3
SMALL_DATASET = ["a"] * 7 + ["b"] * 2 + ["c"] * 4  # "b" has fewer videos than a batch of 3


def _process_batches(make_sampler, batch_size: int, num_processes: int) -> list[list[list[int]]]:
    """The index batches each process draws: the Trainer's DataLoader batching (``batch_size``, ``drop_last=False``)
    and accelerate's ``BatchSamplerShard`` (whole batches round-robin, ``even_batches`` default). Each process builds
    its own sampler, as in a real run."""
    out = []
    for rank in range(num_processes):
        batches = BatchSampler(make_sampler(), batch_size, drop_last=False)
        if num_processes > 1:
            batches = BatchSamplerShard(batches, num_processes=num_processes, process_index=rank)
        out.append(list(batches))
    return out


@pytest.mark.parametrize("groups", [GROUPS, SMALL_DATASET])
@pytest.mark.parametrize("num_processes", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_sampler_batches_are_one_dataset_on_every_process(groups, num_processes, seed):
    for epoch in range(3):

        def make(epoch=epoch):
            sampler = DatasetGroupedSampler(groups, batch_size=3, seed=seed)
            sampler.set_epoch(epoch)
            return sampler

        per_process = _process_batches(make, 3, num_processes)
        assert len({len(batches) for batches in per_process}) == 1 and per_process[0]
        for batches in per_process:
            for batch in batches:
                assert len(batch) == 3
                assert len({groups[i] for i in batch}) == 1, f"epoch {epoch}: batch {batch} mixes datasets"
        assert {i for batches in per_process for b in batches for i in b} == set(range(len(groups)))


def test_grouped_sampler_length_epochs_and_determinism():
    sampler = DatasetGroupedSampler(GROUPS, batch_size=3, seed=0)
    first = list(sampler)
    assert len(first) == len(sampler) == 18  # 3 + 2 + 1 chunks of 3
    assert list(sampler) == first  # the order depends on (seed, epoch) only: every process draws the same
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(set(sampler)) == list(range(15))
    assert list(DatasetGroupedSampler(GROUPS, batch_size=3, seed=1)) != first


@pytest.mark.parametrize("groups", [GROUPS, SMALL_DATASET])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_short_chunks_are_filled_within_the_dataset_without_repeats_when_it_can(groups, seed):
    chunks = dataset_chunks(groups, 3, np.random.default_rng(seed))
    assert len(chunks) == num_dataset_chunks(groups, 3) == sum(-(-n // 3) for n in Counter(groups).values())
    sizes = Counter(groups)
    for chunk in chunks:
        name = groups[chunk[0]]
        assert len(chunk) == 3 and {groups[i] for i in chunk} == {name}
        if sizes[name] >= 3:
            assert len(set(chunk)) == 3  # other videos of the dataset, drawn without replacement
        else:  # the whole dataset, repeated as evenly as possible
            assert set(chunk) == {i for i, g in enumerate(groups) if g == name}
            assert max(Counter(chunk).values()) - min(Counter(chunk).values()) <= 1
    assert {i for c in chunks for i in c} == set(range(len(groups)))
    assert dataset_chunks(groups, 3) == dataset_chunks(groups, 3)  # no rng: deterministic, in index order


@pytest.mark.parametrize(
    "num_processes, per_device, steps_per_generation, num_generations",
    [(1, 4, 1, 2), (2, 2, 1, 2), (2, 3, 2, 4), (2, 3, 1, 2)],  # (2, 3, 2, 4): a prompt's group straddles the ranks
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grpo_generation_batches_are_one_dataset(
    num_processes, per_device, steps_per_generation, num_generations, seed
):
    generation_batch_size = per_device * steps_per_generation * num_processes  # GRPOConfig's default
    prompts = generation_batch_size // num_generations
    repeat_count = 2 * steps_per_generation  # num_iterations = 2

    def make():
        return DatasetRepeatSampler(GROUPS, num_generations, batch_size=prompts, repeat_count=repeat_count, seed=seed)

    assert len(make()) == len(list(make()))
    # GRPOTrainer's train DataLoader loads per_device_train_batch_size × steps_per_generation rows per process
    per_process = _process_batches(make, per_device * steps_per_generation, num_processes)
    steps = len(per_process[0])
    assert steps and all(len(b) == steps for b in per_process)
    seen = set()
    for k in range(steps):
        generation_batch = [i for batches in per_process for i in batches[k]]  # TRL's gather order: rank 0, 1, ...
        assert len(generation_batch) == generation_batch_size
        assert len({GROUPS[i] for i in generation_batch}) == 1, f"step {k}: {generation_batch} mixes datasets"
        blocks = [generation_batch[j : j + num_generations] for j in range(0, generation_batch_size, num_generations)]
        assert all(len(set(b)) == 1 for b in blocks)  # rewards.view(-1, num_generations) rows are one prompt each
        assert len({b[0] for b in blocks}) == prompts  # distinct prompts (every dataset has >= `prompts` videos)
        seen.update(generation_batch)
    assert seen == set(range(len(GROUPS)))
