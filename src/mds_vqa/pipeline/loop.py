"""The whole MDS-VQA loop, one method per stage, each stage being the recipe a user can also run alone.

For every round: score the source pool with f → train g → score the unlabelled target pool with g → (once) frame
features → select with each strategy → the simulated annotator reveals the MOS of the first strategy's selection →
GRPO + LoRA on source + everything labelled so far → score the test splits → evaluate. With ``finetune_strategies:
all`` (one round) every strategy's selection is annotated and fine-tuned on, one *arm* per strategy under
``round_1/arms/<strategy>/``: the paper's comparison. The ``uncertainty`` and ``noise_stability`` strategies read f's
sampled-score spread and its score change under weight noise, scored on the unlabelled pool first. The next round uses the
fine-tuned model (adapter merged) as f and never selects a labelled video again. Stages resume by key
(:mod:`mds_vqa.pipeline.stages`). Each scoring stage reads with its own mode: ``source_score_mode`` (f on the source:
the errors g learns), ``difficulty_score_mode`` (g) and ``eval_score_mode`` (the base target pool and the test splits).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PipelineConfig, check_stage_fields
from .report import write_summary
from .stage_args import (
    EvaluateStage,
    FailurePredictorStage,
    FeaturesStage,
    FinetuneStage,
    ImportRatingsStage,
    RecipeStage,
    ScoreStage,
    SelectStage,
)
from .stages import AwaitingRatings, StageRunner

__all__ = ["Arm", "Pipeline", "RoundResult"]

MODEL_UNCERTAINTY_STRATEGIES = ("uncertainty", "noise_stability")  # scored by f on the unlabelled pool first


@dataclass
class Arm:
    """One strategy's arm of a comparison: its annotated selection, its adapter and its scored test splits."""

    strategy: str
    labelled: Path
    adapter: Path
    eval_source: Path
    eval_target: Path


@dataclass
class RoundResult:
    """What one select → annotate → fine-tune round produced (folders) and how many videos are labelled so far."""

    round: int
    g: Path
    difficulty: Path
    selections: dict[str, Path]
    labelled: Path
    adapter: Path
    eval_source: Path
    eval_target: Path
    labelled_total: int
    arms: dict[str, Arm] = field(default_factory=dict)


class Pipeline(StageRunner):
    """Runs :class:`PipelineConfig` (see the module docstring). ``python`` is the interpreter of the stages."""

    def __init__(self, config: PipelineConfig, *, python: str = sys.executable, env: dict[str, str] | None = None):
        if not config.source_pool or not config.target_pool:
            raise ValueError("source_pool and target_pool are required (pool Datasets from recipes/build_pool.py).")
        check_stage_fields(config)
        launchers = {"train": config.launcher, "score": config.score_launcher or "python"}
        super().__init__(config.output_dir, launchers=launchers, python=python, env=env)
        self.cfg = config
        self.labelled_ids: list[str] = []
        self.annotator: Any = None
        self.target: Any = None  # the target pool (the simulated annotators' oracle)
        self.arm_annotators: dict[str, Any] = {}  # finetune_strategies 'all': one simulated annotator per strategy

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every round; returns the summary (also written to ``<output_dir>/report/summary.json``)."""
        from datasets import load_from_disk

        from ..annotation import SimulatedAnnotator

        cfg, out = self.cfg, self.out
        target = self.target = load_from_disk(cfg.target_pool)
        if cfg.annotator == "simulated":
            self.annotator = SimulatedAnnotator(
                target, noise_std=cfg.annotator_noise, seed=cfg.seed, log_path=out / "annotation_log.jsonl"
            )
        model = cfg.model_name_or_path
        base_source, base_target = self.score_base()
        features = self.extract_features(self.unlabelled_target(target))
        source_features = self.extract_source_features() if cfg.diversity_include_source else None
        rounds: list[RoundResult] = []
        for r in range(1, cfg.rounds + 1):
            rounds.append(self.run_round(r, model, features, base_source, source_features))
            if r < cfg.rounds:
                model = self.merge(r, model, rounds[-1].adapter)
        report = self.evaluate(self.base_source_for_eval(base_source), base_target, rounds)
        if cfg.stage_hub:
            self.publish(rounds[-1].adapter, rounds[-1].selections[cfg.strategies[0]])
        return write_summary(self, report, rounds)

    def run_round(
        self, r: int, model: str, features: Path, base_source: Path, source_features: Path | None = None
    ) -> RoundResult:
        """One select → annotate → fine-tune round with ``model`` as f."""
        from datasets import load_from_disk

        cfg, rd = self.cfg, self.out / f"round_{r}"
        source = base_source
        if r > 1:
            source = self.score_pool(
                f"r{r}_score_source", cfg.source_pool, rd / "scored_source", model, mode=cfg.source_score_mode
            )
        g = self.train_failure_predictor(r, source, model)
        unlabelled = self.unlabelled_pool(r)
        difficulty = self.score_pool(
            f"r{r}_difficulty",
            unlabelled,
            rd / "difficulty",
            model,
            adapter=g,
            task="difficulty",
            column="difficulty",
            mode=cfg.difficulty_score_mode,
        )
        model_scores = self.model_uncertainty(r, unlabelled, model)
        candidates = self.candidates(r, features, difficulty, model_scores)
        labelled = self.labelled_features(r, features, source_features)
        selections = {s: self.select(r, candidates, s, labelled) for s in cfg.strategies}
        if cfg.finetune_strategies == "all":
            arms = {s: self.run_arm(r, s, selections[s], model) for s in cfg.strategies}
            first = arms[cfg.strategies[0]]
            self.labelled_ids.extend(load_from_disk(str(first.labelled))["video_id"])
            return RoundResult(
                r,
                g,
                difficulty,
                selections,
                first.labelled,
                first.adapter,
                first.eval_source,
                first.eval_target,
                len(self.labelled_ids),
                arms,
            )
        labelled = self.annotate(r, selections[cfg.strategies[0]])
        adapter = self.finetune(r, model)
        scored = self.score_tests(r, model, adapter, rd / "eval")
        return RoundResult(r, g, difficulty, selections, labelled, adapter, *scored, len(self.labelled_ids))

    def run_arm(self, r: int, strategy: str, selection: Path, model: str) -> Arm:
        """One strategy's arm of the comparison: its own simulated annotator reveals its selection (a video picked
        by two strategies gets the same label in both), GRPO + LoRA on source + that selection, the test splits
        scored with its adapter."""
        arm = self.out / f"round_{r}" / "arms" / strategy
        labelled = self.annotate_simulated(
            r, selection, output=arm / "labelled", name=f"r{r}_annotate_{strategy}", strategy=strategy
        )
        adapter = self.finetune(
            r, model, labelled=[labelled], output=arm / "adapter", name=f"r{r}_finetune_{strategy}"
        )
        scored = self.score_tests(r, model, adapter, arm / "eval", suffix=f"_{strategy}")
        return Arm(strategy, labelled, adapter, *scored)

    def score_tests(self, r: int, model: str, adapter: Path, output: Path, suffix: str = "") -> list[Path]:
        """The source and target test splits scored by ``model`` + ``adapter`` (read with ``eval_score_mode``)."""
        return [
            self.score_pool(
                f"r{r}_score_{side}_test{suffix}",
                pool,
                output / side,
                model,
                adapter=adapter,
                split="test",
                mode=self.cfg.eval_score_mode,
            )
            for side, pool in (("source", self.cfg.source_pool), ("target", self.cfg.target_pool))
        ]

    # -- recipe stages -------------------------------------------------------------------------------------------
    def run_stage(self, name: str, stage: RecipeStage, output: Path, *extra: dict[str, Any] | None) -> Path:
        """Run ``stage``'s recipe with its fields plus ``extra`` (the user's per-stage fields) unless done."""
        return self.recipe(name, stage.recipe, stage.args(*extra), Path(output), kind=stage.kind)

    def score_pool(
        self,
        name,
        pool,
        output,
        model,
        *,
        adapter=None,
        task="scoring",
        column="score",
        split=None,
        mode,
        extra: dict[str, Any] | None = None,
    ):
        """Score ``pool`` with ``model`` (+ ``adapter``) into ``output`` (``recipes/score.py``), read with ``mode``
        (``extra``: score.py fields set on top of the user's ``score_args``)."""
        stage = ScoreStage(
            dataset_path=str(pool),
            output_dir=str(output),
            model_name_or_path=str(model),
            dtype=self.cfg.dtype,
            adapter=None if adapter is None else str(adapter),
            score_column=column,
            split=split,
            task=task,
            mode=mode,
        )
        return self.run_stage(name, stage, Path(output), self.cfg.sampling, self.cfg.score_args, extra)

    def score_base(self) -> tuple[Path, Path]:
        """The base model f's scores of the source pool (what g learns from, read with ``source_score_mode``) and of
        the target pool (the evaluation's, read with ``eval_score_mode``)."""
        cfg, base, model = self.cfg, self.out / "base", self.cfg.model_name_or_path
        source = self.score_pool(
            "base_score_source", cfg.source_pool, base / "scored_source", model, mode=cfg.source_score_mode
        )
        target = self.score_pool(
            "base_score_target", cfg.target_pool, base / "scored_target", model, mode=cfg.eval_score_mode
        )
        return source, target

    def base_source_for_eval(self, base_source: Path) -> Path:
        """The base model's scores of the source pool read as the evaluation reads: f's source scores when both
        modes agree, else the source pool scored again with ``eval_score_mode``."""
        cfg = self.cfg
        if cfg.eval_score_mode == cfg.source_score_mode:
            return base_source
        output = self.out / "base" / "scored_source_eval"
        return self.score_pool(
            "base_score_source_eval", cfg.source_pool, output, cfg.model_name_or_path, mode=cfg.eval_score_mode
        )

    def extract_features(self, pool: Path) -> Path:
        """Frame features of the unlabelled target pool (once for every round)."""
        cfg, output = self.cfg, self.out / "features"
        stage = FeaturesStage(str(pool), str(output), cfg.clip_model_name, cfg.clip_pretrained, cfg.num_frames)
        return self.run_stage("features", stage, output, cfg.features_args)

    def extract_source_features(self) -> Path:
        """Frame features of the source pool's train split (``diversity_include_source``: already labelled)."""
        from datasets import load_from_disk

        from ..annotation import hide_mos

        cfg, pool = self.cfg, self.out / "source_train"

        def write():
            source = load_from_disk(cfg.source_pool)
            hide_mos(source.filter(lambda s: s == "train", input_columns="split")).save_to_disk(str(pool))

        self.step("source_train", pool, write, params={"source_pool": cfg.source_pool, "split": "train"})
        output = self.out / "source_features"
        stage = FeaturesStage(str(pool), str(output), cfg.clip_model_name, cfg.clip_pretrained, cfg.num_frames)
        return self.run_stage("source_features", stage, output, cfg.features_args)

    def labelled_features(self, r: int, features: Path, source_features: Path | None) -> list[Path]:
        """The features Datasets the diversity term of round ``r`` counts: the target videos labelled in earlier
        rounds (``diversity_labelled``, from round 2) and the source pool (``diversity_include_source``)."""
        from datasets import load_from_disk

        paths = [source_features] if source_features is not None else []
        if r == 1 or not self.cfg.diversity_labelled:
            return paths
        output = self.out / f"round_{r}" / "labelled_features"

        def write():
            known = set(self.labelled_ids)
            feats = load_from_disk(str(features))
            feats.filter(lambda v: v in known, input_columns="video_id").save_to_disk(str(output))

        params = {"features": str(features), "labelled": self._labelled_before(r)}
        return [*paths, self.step(f"r{r}_labelled_features", output, write, params=params)]

    def train_failure_predictor(self, r: int, scored_source: Path, model: str) -> Path:
        """Train g on the source pool scored by this round's f."""
        cfg, output = self.cfg, self.out / f"round_{r}" / "g"
        stage = FailurePredictorStage(str(scored_source), str(model), cfg.dtype, str(output), cfg.seed)
        return self.run_stage(f"r{r}_failure_predictor", stage, output, cfg.sampling, cfg.failure_predictor_args)

    def select(self, r: int, candidates: Path, strategy: str, labelled: list[Path] | None = None) -> Path:
        """Select this round's budget from the candidates with ``strategy`` (the diversity term also counting the
        ``labelled`` features Datasets). ``uncertainty`` and ``noise_stability`` leave out the videos f gave no spread
        or instability for (fewer than two parsed sampled answers: listed in the selection's report)."""
        cfg, output = self.cfg, self.out / f"round_{r}" / "selection" / strategy
        paths = [str(p) for p in labelled] if labelled else None
        stage = SelectStage(str(candidates), str(output), strategy, cfg.budget, cfg.lam, cfg.seed + r, paths)
        own = {"drop_incomplete": True} if strategy in MODEL_UNCERTAINTY_STRATEGIES else None
        return self.run_stage(f"r{r}_select_{strategy}", stage, output, own, cfg.select_args)

    def finetune(
        self,
        r: int,
        model: str,
        *,
        labelled: list[Path] | None = None,
        output: Path | None = None,
        name: str | None = None,
    ) -> Path:
        """GRPO + LoRA on the source pool and ``labelled`` (default: every round's labelled videos so far)."""
        cfg, output = self.cfg, output or self.out / f"round_{r}" / "adapter"
        if labelled is None:
            labelled = [self.out / f"round_{k}" / "labelled" for k in range(1, r + 1)]
        stage = FinetuneStage([cfg.source_pool, *map(str, labelled)], str(model), cfg.dtype, str(output), cfg.seed)
        return self.run_stage(name or f"r{r}_finetune", stage, output, cfg.sampling, cfg.finetune_args)

    def model_uncertainty(self, r: int, unlabelled: Path, model: str) -> dict[str, Path]:
        """What the ``uncertainty`` and ``noise_stability`` strategies read, when they are compared: f's
        ``uncertainty_samples`` sampled answers per video (column ``f_samples_std``: their spread) and f's expectation
        under ``noise_draws`` weight perturbations (column ``f_noise_instability``: the mean score change)."""
        cfg, rd, out = self.cfg, self.out / f"round_{r}", {}
        if "uncertainty" in cfg.strategies:
            extra = {"num_samples": cfg.uncertainty_samples, "do_sample": True, "noise_draws": 0, "seed": cfg.seed}
            out["uncertainty"] = self.score_pool(
                f"r{r}_uncertainty",
                unlabelled,
                rd / "uncertainty",
                model,
                column="f_samples",
                mode="generate",
                extra=extra,
            )
        if "noise_stability" in cfg.strategies:
            extra = {"noise_draws": cfg.noise_draws, "noise_std": cfg.noise_std, "noise_seed": cfg.seed}
            out["instability"] = self.score_pool(
                f"r{r}_noise_stability",
                unlabelled,
                rd / "noise_stability",
                model,
                column="f_noise",
                mode="expectation",
                extra=extra,
            )
        return out

    def evaluate(self, base_source: Path, base_target: Path, rounds: list[RoundResult]) -> Path:
        """The report: correlations of the base and of each round's model, and the failure-identification table of
        every strategy's round-1 subset (the paper's Table 1: what each strategy picked from the untouched pool)."""
        cfg, report = self.cfg, self.out / "report"
        models = [{"name": "base", "dataset_path": str(p), "column": "score"} for p in (base_source, base_target)]
        for res in rounds:
            arms = (
                res.arms.values()
                if res.arms
                else [Arm(cfg.strategies[0], res.labelled, res.adapter, res.eval_source, res.eval_target)]
            )
            for arm in arms:
                name = f"round {res.round}" if cfg.rounds > 1 else f"base+{arm.strategy}"
                models += [
                    {"name": name, "dataset_path": str(p), "column": "score"}
                    for p in (arm.eval_source, arm.eval_target)
                ]
        stage = EvaluateStage(
            output_dir=str(report),
            models=models,
            failure_scores=[{"dataset_path": str(base_target), "column": "score"}],
            failure_subsets=[
                {"name": s, "dataset_path": str(self.out / "round_1" / "selection" / s)} for s in cfg.strategies
            ],
        )
        self.run_stage("evaluate", stage, report / "correlation_table.json")
        return report

    # -- in-process stages ---------------------------------------------------------------------------------------
    def unlabelled_target(self, target) -> Path:
        """The target pool's train split without its MOS: what scoring and selection may see."""
        from ..annotation import hide_mos

        output = self.out / "target_train"

        def write():
            hide_mos(target.filter(lambda s: s == "train", input_columns="split")).save_to_disk(str(output))

        return self.step(
            "target_train_unlabelled", output, write, params={"target_pool": self.cfg.target_pool, "split": "train"}
        )

    def unlabelled_pool(self, r: int) -> Path:
        """Round ``r``'s candidates: the target train split minus every video labelled in earlier rounds."""
        from datasets import load_from_disk

        output, earlier = self.out / f"round_{r}" / "unlabelled", self._labelled_before(r)

        def write():
            known = set(self.labelled_ids)
            pool = load_from_disk(str(self.out / "target_train"))
            pool.filter(lambda v: v not in known, input_columns="video_id").save_to_disk(str(output))

        params = {"target_train": str(self.out / "target_train"), "labelled": earlier}
        return self.step(f"r{r}_unlabelled", output, write, params=params)

    def candidates(
        self, r: int, features: Path, difficulty: Path, model_scores: dict[str, Path] | None = None
    ) -> Path:
        """The unlabelled videos with their frame features and g's difficulty (the selection's input), and the
        ``uncertainty`` / ``instability`` columns of :meth:`model_uncertainty` when they were scored."""
        from datasets import load_from_disk

        from ..hub import write_provenance

        output = self.out / f"round_{r}" / "candidates"

        def write():
            scored = load_from_disk(str(difficulty))
            g_of = dict(zip(scored["video_id"], scored["difficulty"]))
            pool = load_from_disk(str(features)).filter(lambda v: v in g_of, input_columns="video_id")
            pool = pool.add_column("difficulty", [g_of[v] for v in pool["video_id"]])
            for name, path in (model_scores or {}).items():
                column = {"uncertainty": "f_samples_std", "instability": "f_noise_instability"}[name]
                scored_by_f = load_from_disk(str(path))
                of = dict(zip(scored_by_f["video_id"], scored_by_f[column]))
                pool = pool.add_column(name, [of.get(v) for v in pool["video_id"]])
            pool.save_to_disk(str(output))
            # provenance for the selection's dataset card: how the features and g were made, embedded
            write_provenance(
                output, recipe="candidates", summary={"difficulty_column": "difficulty"}, inputs=[features, difficulty]
            )

        params = {"features": str(features), "difficulty": str(difficulty)}
        params.update({name: str(path) for name, path in (model_scores or {}).items()})
        return self.step(f"r{r}_candidates", output, write, params=params)

    def annotate(self, r: int, selection: Path) -> Path:
        """The selected videos' MOS: from raters (``annotator: human``) or the simulated annotator."""
        if self.cfg.annotator == "human":
            return self.annotate_by_raters(r, selection)
        return self.annotate_simulated(r, selection)

    def annotate_by_raters(self, r: int, selection: Path) -> Path:
        """Import the raters' answers for round ``r``'s selection (``recipes/import_ratings.py``) once every selected
        video has ``min_ratings`` ratings; until then stop with :class:`AwaitingRatings` saying how to rate."""
        import hashlib

        from datasets import load_from_disk

        from ..ratings_import import read_ratings

        cfg, rd = self.cfg, self.out / f"round_{r}"
        ratings, output = rd / "ratings" / "ratings.csv", rd / "labelled"
        ids = list(load_from_disk(str(selection))["video_id"])
        counts = read_ratings(ratings, known_ids=ids)["video_id"].value_counts() if ratings.is_file() else {}
        done = sum(1 for v in ids if counts.get(v, 0) >= cfg.min_ratings)
        if done < len(ids):
            root = f" --video_root {cfg.video_root}" if cfg.video_root else ""
            raise AwaitingRatings(
                f"Round {r}: waiting for ratings. {done} of {len(ids)} selected videos have at least "
                f"{cfg.min_ratings} rating(s) in {ratings}.\n"
                f"  1. Rate them: python recipes/rate.py --subset_path {selection} --output_dir {ratings.parent}{root}\n"
                f"     (or collect them elsewhere into {ratings}: video_id,rater,score, one row per answer)\n"
                "  2. Run this pipeline again: it imports the ratings (recipes/import_ratings.py) and goes on."
            )
        stage = ImportRatingsStage(str(selection), str(ratings), str(output), cfg.min_ratings, cfg.video_root)
        digest = hashlib.sha256(ratings.read_bytes()).hexdigest()
        self.recipe(
            f"r{r}_import_ratings",
            stage.recipe,
            stage.args(cfg.import_ratings_args),
            output,
            fingerprint={"ratings_sha256": digest},
        )
        self.labelled_ids.extend(ids)  # every selected video, rated or left out by screening: never picked again
        return output

    def annotate_simulated(
        self,
        r: int,
        selection: Path,
        *,
        output: Path | None = None,
        name: str | None = None,
        strategy: str | None = None,
    ) -> Path:
        """The simulated annotator reveals the MOS of the selected videos (rebuilt from disk on resume). With
        ``strategy`` (an arm of a comparison) the strategy's own annotator does, and the ids do not join
        ``labelled_ids``."""
        from datasets import load_from_disk

        from ..annotation import SimulatedAnnotator

        cfg = self.cfg
        output = output or self.out / f"round_{r}" / "labelled"
        name = name or f"r{r}_annotate"
        annotator = self.annotator
        if strategy is not None:
            if strategy not in self.arm_annotators:
                self.arm_annotators[strategy] = SimulatedAnnotator(
                    self.target,
                    noise_std=cfg.annotator_noise,
                    seed=cfg.seed,
                    log_path=self.out / f"annotation_log_{strategy}.jsonl",
                )
            annotator = self.arm_annotators[strategy]
        params = {
            "selection": str(selection),
            "strategy": strategy or cfg.strategies[0],
            "labelled_before": self._labelled_before(r),
            "noise_std": cfg.annotator_noise,
            "seed": cfg.seed,
            "target_pool": cfg.target_pool,
        }

        def write():
            ids = list(load_from_disk(str(selection))["video_id"])
            note = f"round {r}, strategy {params['strategy']}"
            annotator.annotate(ids, note=note).save_to_disk(str(output))

        if self.plan(name, output, params).skip:  # done before: the annotator has spent these labels already
            annotator.revealed.extend(load_from_disk(str(output))["video_id"])
        self.step(name, output, write, params=params)
        if strategy is None:
            self.labelled_ids.extend(load_from_disk(str(output))["video_id"])
        return output

    def merge(self, r: int, model: str, adapter: Path) -> str:
        """Merge round ``r``'s adapter into f: the next round's model."""
        output = self.out / f"round_{r}" / "model"
        params = {"model": str(model), "adapter": str(adapter), "dtype": self.cfg.dtype}
        return str(
            self.step(f"r{r}_merge", output, lambda: _merge(model, adapter, output, self.cfg.dtype), params=params)
        )

    def publish(self, adapter: Path, selection: Path) -> None:
        """Stage (and push, when asked) the last adapter and the last selection with their cards."""
        from ..hub import HubArguments, publish_adapter, publish_dataset

        cfg, hub = self.cfg, self.out / "hub"
        model_hub = HubArguments(
            push_to_hub=cfg.push_to_hub, hub_model_id=cfg.hub_model_id, stage_dir=str(hub / "adapter")
        )
        data_hub = HubArguments(
            push_to_hub=cfg.push_to_hub, hub_dataset_id=cfg.hub_dataset_id, stage_dir=str(hub / "selection")
        )

        def write():
            publish_adapter(
                adapter, model_hub, kind="grpo", base_model=cfg.model_name_or_path, source_data=cfg.source_pool
            )
            publish_dataset(str(selection), data_hub)

        params = {
            "adapter": str(adapter),
            "selection": str(selection),
            "base_model": cfg.model_name_or_path,
            "source_data": cfg.source_pool,
            "push_to_hub": cfg.push_to_hub,
            "hub_model_id": cfg.hub_model_id,
            "hub_dataset_id": cfg.hub_dataset_id,
        }
        self.step("publish", hub, write, params=params)

    def _labelled_before(self, r: int) -> list[str]:
        return [str(self.out / f"round_{k}" / "labelled") for k in range(1, r)]


def _merge(model: str, adapter: Path, output: Path, dtype: str) -> None:
    """Merge ``adapter`` into ``model`` and save model + processor to ``output`` (f for the next round)."""
    from ..modeling import load_model_and_processor

    merged, processor = load_model_and_processor(str(model), adapter=str(adapter), dtype=dtype, merge_adapter=True)
    tmp = output.with_name(output.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    os.replace(tmp, output)
