"""Pick the videos of a pool to send to human raters, and write the subset with a report.

Usage:
    python recipes/select_subset.py --config recipes/configs/youtube_sfv_sdr/select.yaml
    python recipes/select_subset.py --pool_path pools/sdr_features --output_dir selections/sdr_mds --budget 5% --lam 0.25
    python recipes/select_subset.py --pool_path user/sdr-features --revision v1 --output_dir selections/sdr_mds

The pool needs a ``difficulty`` column (g, from the failure predictor) for ``mds`` and ``difficulty``, and a
``features`` column (``recipes/extract_features.py``) for ``mds``, ``diversity`` and ``coreset``. The uncertainty
baselines read a score column written by ``recipes/score.py``, named with ``--difficulty_column``: ``uncertainty``
the spread of sampled scores (``--mode generate --num_samples 5`` writes ``<score_column>_std``), ``noise_stability``
the change under weight noise (``--noise_draws 4`` writes ``<score_column>_instability``):

    python recipes/select_subset.py --pool_path pools/sdr_sampled --output_dir selections/sdr_unc \
        --strategy uncertainty --difficulty_column score_std

The output folder is the selected subset as a Dataset (``load_from_disk``), in pick order, with the columns ``rank``
(1 = first pick), ``g`` (the score the strategy ranked by), ``diversity`` (mean Chamfer distance to the videos picked before: the term λ multiplies) and ``pool_index``,
plus ``report.md`` with a 2-D map of the pool's features and the distribution of g in the pool and in the subset.
The pool and the ``labelled_paths`` Datasets are ``save_to_disk`` folders, staged (Hub-layout) folders or Hub ids
(``--revision``: the pool's); ``--video_root`` records the subset's relative video paths resolved.

On several GPUs, when the pool's features do not fit on one (``mds`` and ``diversity``):

    torchrun --nproc_per_node 8 recipes/select_subset.py --config recipes/configs/youtube_sfv_sdr/select.yaml

Each process puts only its contiguous shard of the pool's features on its GPU (``cuda:LOCAL_RANK``; on CPU the
processes use gloo) and the picks are those of one process (``mds_vqa.selection.select_subset_sharded``); rank 0
alone writes the outputs, as a one-process run does, while the others wait for it and exit 0. The other strategies, or
``--shard_pool false``, run on rank 0 alone on the whole pool (the log says so) while the other processes exit at once.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("mds_vqa.select_subset")


@dataclass
class SelectArguments:
    """Select a subset of a pool (``recipes/select_subset.py``)."""

    pool_path: str = field(
        metadata={"help": "Pool with the difficulty and/or features columns: a folder, a staged folder or a Hub id."}
    )
    output_dir: str = field(metadata={"help": "Where the selected subset (Dataset) and report.md are written."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id pool_path."})
    video_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative video paths are relative to (the subset records them resolved)."},
    )
    strategy: str = field(
        default="mds",
        metadata={
            "help": "mds, difficulty, diversity, coreset, random, uncertainty (top spread of sampled scores) or "
            "noise_stability (top score change under weight noise)."
        },
    )
    budget: str = field(default="0.05", metadata={"help": "A count (100), a fraction (0.05) or a percentage (5%%)."})
    lam: float = field(default=0.25, metadata={"help": "λ, weight of the diversity term (0.25 for CLIP features)."})
    seed: int = field(default=0, metadata={"help": "Seed of `random` and of the first `coreset` center."})
    difficulty_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the strategy's per-video score (default: the strategy's own: difficulty (g) for "
            "mds and difficulty, uncertainty, instability; e.g. score_std / score_instability from recipes/score.py)."
        },
    )
    features_column: str = field(default="features", metadata={"help": "Column holding the frame features."})
    id_column: str = field(default="video_id", metadata={"help": "Column naming each video."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, ... (auto: CUDA when available)."})
    storage_dtype: str = field(
        default="float32", metadata={"help": "Keep features as float32, float16 or bfloat16 during selection."}
    )
    block: int = field(
        default=1,
        metadata={
            "help": "mds and diversity in one process: picks per pass over the pool. 1: one pass per pick on a GPU "
            "(the lazy greedy on CPU). B > 1: one pass per B picks, each step's candidates screened on the device; "
            "the same picks (for pools of a million videos on a GPU; see docs/benchmarks.md)."
        },
    )
    drop_incomplete: bool = field(
        default=False, metadata={"help": "Leave out rows without features or with a NaN g instead of stopping."}
    )
    keep_features: bool = field(default=False, metadata={"help": "Keep the features column in the subset."})
    compare_random: bool = field(
        default=True, metadata={"help": "Report the diversity of a random subset of the same size."}
    )
    labelled_paths: list[str] | None = field(
        default=None,
        metadata={
            "help": "Datasets with the features column of videos labelled before (earlier rounds, the source pool): "
            "the diversity term then averages over them too (mds, diversity; coreset starts from them)."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})
    shard_pool: bool = field(
        default=True,
        metadata={
            "help": "Under torchrun with several processes (WORLD_SIZE > 1), mds and diversity: split the pool's "
            "features across the processes, one contiguous shard on each one's GPU (cuda:LOCAL_RANK; gloo on CPU); "
            "same picks as one process, rank 0 writes the outputs. false (or another strategy): rank 0 selects on "
            "the whole pool alone and the other processes exit. No effect in one process."
        },
    )


def main(args: SelectArguments, hub_args=None) -> Path | None:
    """Select, save the subset and write the report (staged with a dataset card, and pushed, when ``hub_args`` asks);
    return the output folder.

    Under ``torchrun`` with several processes: ``mds`` and ``diversity`` with ``shard_pool`` split the pool across
    them (:func:`_main_sharded`); otherwise rank 0 runs the one-process selection alone. Every rank other than 0
    returns ``None``."""
    from mds_vqa.loading import load_pool
    from mds_vqa.selection import SHARDABLE_STRATEGIES, select_subset
    from mds_vqa.sharded_greedy import launched_world

    world, rank = launched_world()
    sharded = world > 1 and args.shard_pool and args.strategy in SHARDABLE_STRATEGIES
    if world > 1 and not sharded:
        why = (
            "--shard_pool false"
            if not args.shard_pool
            else f"strategy {args.strategy!r} cannot be sharded (only {', '.join(SHARDABLE_STRATEGIES)} can)"
        )
        if rank != 0:
            logger.info("Rank %d of %d: %s, rank 0 selects alone; exiting", rank, world, why)
            return None
        logger.info(
            "%d processes launched but %s: rank 0 selects on the whole pool alone, the other %d exit at once",
            world,
            why,
            world - 1,
        )
    if hub_args is not None:
        hub_args.check("dataset")  # a push without a repo id fails now, not after the selection
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    if sharded:
        if args.block > 1:
            raise ValueError(
                f"--block {args.block} reads one process's whole pool once per block; a pool split across "
                "processes runs one pass per pick. Pass --block 1, or --shard_pool false to select in one process."
            )
        return _main_sharded(args, hub_args, out)
    pool = load_pool(args.pool_path, revision=args.revision, video_root=args.video_root)
    labelled = [load_pool(p) for p in args.labelled_paths or []]
    chosen = select_subset(
        pool, args.strategy, device=args.device, labelled=labelled, block=args.block, **_selection_options(args)
    )
    return _write_outputs(args, hub_args, chosen, out)


# what the greedy counted (mds_vqa.selection.Selection.params), recorded in selection.json
GREEDY_COUNTERS = ("distances_computed", "pool_passes", "blocks", "failed_blocks", "steps_redone")


def _selection_options(args: SelectArguments) -> dict:
    """The keyword arguments of ``select_subset`` / ``select_subset_sharded`` that come straight from the flags."""
    return dict(
        budget=args.budget,
        lam=args.lam,
        seed=args.seed,
        difficulty_column=args.difficulty_column,
        features_column=args.features_column,
        id_column=args.id_column,
        storage_dtype=args.storage_dtype,
        drop_incomplete=args.drop_incomplete,
        keep_features=args.keep_features,
        compare_random=args.compare_random,
        source=args.pool_path,
    )


def _main_sharded(args: SelectArguments, hub_args, out: Path) -> Path | None:
    """``mds`` / ``diversity`` with the pool split across the processes ``torchrun`` launched: every rank loads its
    shard onto its device (:func:`mds_vqa.selection.select_subset_sharded`); rank 0 writes the outputs from the
    picks and then tells the others, which wait for it (and fail too, naming its error, if it fails). Returns the
    output folder on rank 0, ``None`` elsewhere."""
    import torch.distributed as dist

    from mds_vqa.loading import load_pool
    from mds_vqa.selection import select_subset_sharded
    from mds_vqa.sharded_greedy import init_sharding

    device, created = init_sharding(args.device)
    try:
        pool = load_pool(args.pool_path, revision=args.revision, video_root=args.video_root)
        labelled = [load_pool(p) for p in args.labelled_paths or []]
        chosen = select_subset_sharded(
            pool, args.strategy, device=device, labelled=labelled, **_selection_options(args)
        )
        status: list[str | None] = [None]
        if chosen is None:  # not rank 0: wait for its outputs
            dist.broadcast_object_list(status, src=0)
            if status[0] is not None:
                raise RuntimeError(f"rank 0 failed to write the selection to {out}: {status[0]}")
            dist.barrier()  # every rank is done with the group before any destroys it
            return None
        try:
            written = _write_outputs(args, hub_args, chosen, out, processes=dist.get_world_size())
        except Exception as err:
            status[0] = f"{type(err).__name__}: {err}"
            raise
        finally:
            dist.broadcast_object_list(status, src=0)
        dist.barrier()
        return written
    finally:
        if created:
            dist.destroy_process_group()


def _write_outputs(args: SelectArguments, hub_args, chosen, out: Path, *, processes: int | None = None) -> Path:
    """Save the subset, its report, ``selection.json`` and the provenance to ``out``, stage / push it when
    ``hub_args`` asks; ``processes``: a sharded run's process count, recorded in ``selection.json``."""
    from mds_vqa.features import column_values
    from mds_vqa.hub import write_provenance
    from mds_vqa.selection_report import write_selection_report

    subset, result, pool = chosen.subset, chosen.selection, chosen.pool
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    subset.save_to_disk(str(out))
    report = write_selection_report(
        out,
        chosen,
        pool_path=args.pool_path,
        lam=args.lam,
        seed=args.seed,
        features_column=args.features_column,
        id_column=args.id_column,
    )
    record = {
        **asdict(args),
        "difficulty_column": chosen.score_column,  # resolved: the column the score was read from
        "pool_size": len(pool),
        "selected": len(result.indices),
        "seconds": result.seconds,
        "computed_on": result.device,
        **{k: result.params[k] for k in GREEDY_COUNTERS if k in result.params},
        **({} if processes is None else {"processes": processes}),
        "pool_index": chosen.pool_index,
        "video_id": column_values(subset, args.id_column) if args.id_column in subset.column_names else None,
    }
    (out / "selection.json").write_text(json.dumps(record, indent=2))
    summary = {k: v for k, v in record.items() if k not in ("pool_index", "video_id")}  # per video: in the Dataset
    inputs = [args.pool_path, *(args.labelled_paths or [])]
    write_provenance(out, recipe="select_subset", arguments=[args, hub_args], summary=summary, inputs=inputs)
    on = result.device if processes is None else f"{processes} processes ({result.device} on rank 0)"
    print(
        f"Selected {len(result.indices)} of {len(pool)} videos with {args.strategy!r} in {result.seconds:.2f} s "
        f"on {on} -> {out} (report: {report})"
    )
    if hub_args is not None:
        from mds_vqa.hub import publish_dataset

        publish_dataset(str(out), hub_args)
    return out


def make_parser():
    """The recipe's parser (a ``trl.TrlParser``): YAML via ``--config``, CLI flags override it."""
    from trl import TrlParser

    from mds_vqa.hub import HubArguments

    return TrlParser((SelectArguments, HubArguments))


if __name__ == "__main__":
    from mds_vqa.cli import run_recipe

    run_recipe(main, make_parser)
