"""Benchmark of the MDS greedy selection (``mds_vqa.selection.select("mds", ...)``), printed as Markdown tables.

1. At the paper's pool size (N = 2,000, F = 8, d = 512, 5 % budget): our selection (the lazy greedy, the CPU default,
   and one pool pass per pick, ``lazy=False``, the GPU default) against a re-implementation of the released algorithm (dense N × N float64
   cache, per-pair ``scipy.spatial.distance.cdist``): same picks?, time of each, speed-up.
2. One greedy step at N = 20,000 against its floor, one matrix product of the pick's frames against all N·F pool
   frames (``pool @ x.T``; the ``x @ pool.T`` layout is timed too), measured in the same run; and the lazy greedy's
   mean time per pick over a 5 % selection.
3. Scaling (``--sizes``, e.g. ``--sizes 100000 1000000``; ``--strategy coreset``): our time, the passes over the
   pool, the distances computed and the peak extra memory (CPU: process peak RSS above the RSS before the call; CUDA:
   ``torch.cuda.max_memory_allocated`` above the memory allocated before it) of each ``--modes`` run (default: the
   device's default mode, lazy on CPU and one pool pass per pick on CUDA, in float32 and with the features stored in
   16 bits, ``--half-dtype``; on CUDA the screened mode, one pool pass per ``--block`` picks, too; how many picks
   change), and with one pool pass per pick at the ``--passes-sizes`` on CPU.

Features are synthetic but CLIP-like (see :func:`clustered_features`: frame cosines ≈ 0.45 across topics, 0.70
within one of 64 topics, 0.92 within a video); g ~ N(3, 0.5) clipped to [1, 5]. Usage:

    python benchmarks/selection.py                          # everything (about 10 min on 2 CPU cores)
    python benchmarks/selection.py --sizes 10000 --no-half  # quick look
    python benchmarks/selection.py --device cuda            # GPU (the reference still runs on CPU)
    python benchmarks/selection.py --device cuda --reference-size 0 --floor-size 0 --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import os
import platform
import time

import numpy as np
import torch
from scipy.spatial.distance import cdist

from mds_vqa.diversity import FramePool, chamfer_one_vs_all
from mds_vqa.selection import resolve_budget, select, select_with_details

# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


def clustered_features(
    n: int, frames: int, dim: int, *, seed: int = 0, topics: int = 64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(n, frames, dim)`` float32 unit vectors with CLIP-like cosine statistics: a shared direction, one of
    ``topics`` topic directions, a per-video and a per-frame component (weights² 0.45, 0.25, 0.22, 0.08), so that two
    frames have cosine ≈ 0.45 across topics, ≈ 0.70 within a topic and ≈ 0.92 within a video. Generated on ``device``
    (the same seed gives other values on another device type)."""
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    scale = dim**-0.5  # a standard normal vector times this has norm ≈ 1, and two of them are nearly orthogonal
    shared = scale * torch.randn(dim, generator=gen, device=device)
    centres = scale * torch.randn(topics, dim, generator=gen, device=device)
    out = torch.empty(n, frames, dim, device=device)
    step = 4096 if device.type == "cpu" else 65536
    for start in range(0, n, step):
        stop = min(n, start + step)
        topic = torch.randint(topics, (stop - start,), generator=gen, device=device)
        video = (
            0.45**0.5 * shared
            + 0.25**0.5 * centres[topic]
            + 0.22**0.5 * scale * torch.randn(stop - start, dim, generator=gen, device=device)
        )
        noise = 0.08**0.5 * scale * torch.randn(stop - start, frames, dim, generator=gen, device=device)
        out[start:stop] = torch.nn.functional.normalize(video[:, None, :] + noise, dim=-1)
    return out


def difficulty(n: int, *, seed: int = 0) -> np.ndarray:
    """g ~ N(3, 0.5) clipped to [1, 5] (a continuous failure-predictor score)."""
    return np.clip(np.random.default_rng(seed).normal(3.0, 0.5, size=n), 1.0, 5.0)


# --------------------------------------------------------------------------------------------------------------------
# The released algorithm (MDS-VQA src/greedy_selection.py: select_data), re-implemented for comparison
# --------------------------------------------------------------------------------------------------------------------


def reference_pair_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer distance as the released code computes it: two ``cdist`` calls in float64."""
    d12 = cdist(a, b, "euclidean")
    d21 = cdist(b, a, "euclidean")
    return (np.mean(np.min(d12, axis=1)) + np.mean(np.min(d21, axis=1))) / 2


def reference_select(features: list[np.ndarray], g: np.ndarray, budget: int, lam: float) -> list[int]:
    """Dense N × N distance cache, running sum, per-pair distances computed on demand (the released algorithm)."""
    n = len(features)
    taken = np.zeros(n, dtype=bool)
    cache = np.full((n, n), np.nan)
    dist_sum = np.zeros(n)
    first = int(np.argmax(g))
    taken[first] = True
    chosen = [first]
    for j in range(n):
        if j != first:
            d = reference_pair_distance(features[first], features[j])
            cache[first, j] = cache[j, first] = d
            dist_sum[j] = d
    for k in range(1, budget):
        candidates = np.where(~taken)[0]
        scores = g[candidates] + lam * (dist_sum[candidates] / k)
        best = int(candidates[np.argmax(scores)])
        taken[best] = True
        chosen.append(best)
        for j in candidates:
            if j == best:
                continue
            if np.isnan(cache[best, j]):
                d = reference_pair_distance(features[best], features[j])
                cache[best, j] = cache[j, best] = d
            dist_sum[j] += cache[best, j]
    return chosen


# --------------------------------------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Hand freed heap memory back to the OS (so earlier sections do not hide new allocations), then reset the
    kernel's peak-RSS counter (Linux ``clear_refs``); False where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(fn, device: torch.device):
    """``(result, wall seconds, process CPU seconds, peak extra bytes)`` of ``fn()``: peak RSS above the RSS before
    the call on CPU, peak allocated CUDA memory above the allocation before the call on GPU. CPU seconds count every
    thread of this process (on a shared machine they show the work done, wall time also shows the waiting)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        base = _status_kb("VmRSS") * 1024
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _status_kb("VmHWM") * 1024 - base
    return out, seconds, cpu, peak


def interleaved_best(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Minimum wall time of each function over ``repeats`` rounds, the functions taking turns within a round."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def hardware(device: torch.device) -> str:
    """One line: CPU model, cores, torch threads, RAM, GPU, torch version, load average."""
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else float("nan")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{ram:.0f} GiB RAM, GPU: {gpu}"
    )


def load() -> str:
    """The 1/5/15-minute load averages (other processes on the machine disturb timings)."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------------


def compare_with_reference(n: int, frames: int, dim: int, budget: float, lam: float, device: torch.device) -> None:
    feats = clustered_features(n, frames, dim, seed=1)
    g = difficulty(n, seed=1)
    count = resolve_budget(budget, n)
    as_numpy = [f.numpy() for f in feats]
    start, cpu_start = time.perf_counter(), time.process_time()
    ref = reference_select(as_numpy, g, count, lam)
    ref_s, ref_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows = []
    threads = torch.get_num_threads()
    for lazy, label in ((True, "lazy greedy (CPU default)"), (False, "one pool pass per pick (GPU default)")):
        run = functools.partial(
            select, "mds", difficulty=g, features=feats, budget=count, lam=lam, device=device, lazy=lazy
        )
        ours, ours_s, ours_cpu, _ = measure(run, device)
        rows.append((f"`select('mds')`, {label}, {device.type}, float32, {threads} thread(s)", ours, ours_s, ours_cpu))
        if device.type == "cpu" and threads > 1:
            torch.set_num_threads(1)
            try:
                one, one_s, one_cpu, _ = measure(run, device)
            finally:
                torch.set_num_threads(threads)
            rows.append((f"`select('mds')`, {label}, cpu, float32, 1 thread", one, one_s, one_cpu))
    print(f"\n### Against the released algorithm (N = {n:,}, F = {frames}, d = {dim}, budget {count}, λ = {lam})\n")
    print("| implementation | wall time (s) | CPU time (s) | speed-up (wall) | speed-up (CPU) | picks |")
    print("|---|---:|---:|---:|---:|---|")
    print(
        f"| reference: dense N×N cache + per-pair `cdist` (float64, 1 thread) | {ref_s:.2f} | {ref_cpu:.2f} | 1 | 1 | {count} |"
    )
    for name, picks, wall, cpu in rows:
        first_diff = next((k for k, (a, b) in enumerate(zip(picks, ref)) if a != b), None)
        verdict = "identical list" if first_diff is None else f"differ from rank {first_diff + 1}"
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {ref_s / wall:.0f}× | {ref_cpu / cpu:.0f}× | {verdict} |")


def step_versus_floor(n: int, frames: int, dim: int, steps: int, repeats: int, device: torch.device) -> None:
    feats = clustered_features(n, frames, dim, seed=2).to(device)
    g = difficulty(n, seed=2)
    pool = FramePool.from_features(feats)
    flat = pool.frames
    x = pool.video(n // 2)
    out = torch.empty(n, device=device)

    def measure_all() -> tuple[float, float, float, float, float]:
        # interleaved, so that a change of machine load between measurements hits all of them alike
        times = interleaved_best(
            {
                "floor": lambda: flat @ x.T,
                "other": lambda: x @ flat.T,
                "pass": lambda: chamfer_one_vs_all(x, pool, out=out),
            },
            repeats,
            device,
        )
        # whole greedy steps: (time of steps+1 picks − time of 1 pick) / steps
        runs = interleaved_best(
            {
                "one": lambda: select("mds", difficulty=g, features=pool, budget=1, lazy=False),
                "many": lambda: select("mds", difficulty=g, features=pool, budget=steps + 1, lazy=False),
            },
            3,
            device,
        )
        # the lazy greedy, mean time per pick over a whole 5 % selection
        count = resolve_budget(0.05, n)
        lazy = interleaved_best(
            {"lazy": lambda: select("mds", difficulty=g, features=pool, budget=count, lazy=True)}, 1, device
        )
        step = (runs["many"] - runs["one"]) / steps
        return times["floor"], times["other"], times["pass"], step, lazy["lazy"] / (count - 1)

    settings = [f"{torch.get_num_threads()} thread(s)" if device.type == "cpu" else device.type]
    results = [measure_all()]
    threads = torch.get_num_threads()
    if device.type == "cpu" and threads > 1:
        torch.set_num_threads(1)
        try:
            results.append(measure_all())
        finally:
            torch.set_num_threads(threads)
        settings.append("1 thread")
    print(f"\n### One greedy step at N = {n:,} (F = {frames}, d = {dim}, {device.type}, float32)\n")
    print("| what | " + " | ".join(f"ms ({s}) | × floor" for s in settings) + " |")
    print("|---|" + "---:|---:|" * len(settings))
    labels = [
        f"floor: one product `pool @ x.T` ({n * frames:,} × {dim} by {dim} × {frames})",
        "same product, layout `x @ pool.T`",
        "`chamfer_one_vs_all` (product + min-reductions)",
        f"one `mds` step with `lazy=False` (pass + running sum + argmax), mean of {steps}",
        f"lazy `mds` (default), mean per pick over a 5 % selection ({resolve_budget(0.05, n):,} picks)",
    ]
    for k, label in enumerate(labels):
        cells = " | ".join(f"{1e3 * r[k]:.1f} | {r[k] / r[0]:.2f}" for r in results)
        print(f"| {label} | {cells} |")


MODES = ("lazy", "passes", "screened")


def parse_mode(spec: str) -> tuple[str, str, int | None]:
    """``MODE:DTYPE[:PICKS]`` (``screened:bfloat16``, ``passes:float32:2000``) as ``(mode, storage, picks)``: the
    greedy's mode (``lazy``; ``passes``, one pass over the pool per pick; ``screened``, one pass per ``--block``
    picks), the features' storage dtype and, optionally, a cap on the picks (a mode whose cost per pick does not
    change along the selection, timed on its first picks)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in MODES or parts[1] not in ("float32", "float16", "bfloat16"):
        raise argparse.ArgumentTypeError(
            f"mode {spec!r}: expected MODE:DTYPE[:PICKS] with MODE one of {', '.join(MODES)} and DTYPE float32, "
            "float16 or bfloat16"
        )
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 else None


def default_modes(device: torch.device, half_dtype: str, half: bool) -> list[tuple[str, str, int | None]]:
    """The device's default mode (lazy on CPU, one pass per pick on CUDA) in float32 and, with ``half``, in
    ``half_dtype``; on CUDA the screened mode too."""
    default = "lazy" if device.type == "cpu" else "passes"
    modes = [(default, "float32", None)] + ([(default, half_dtype, None)] if half else [])
    if device.type == "cuda":
        modes += [("screened", "float32", None)] + ([("screened", half_dtype, None)] if half else [])
    return modes


def scaling(
    sizes,
    frames: int,
    dim: int,
    budget: float,
    lam: float,
    device: torch.device,
    modes: list[tuple[str, str, int | None]],
    passes_sizes=(),
    *,
    strategy: str = "mds",
    block: int = 32,
) -> None:
    """Time, pool passes, distances computed and peak extra memory of ``strategy`` at each pool size in each of
    ``modes`` (:func:`parse_mode`), and with one pool pass per pick in float32 at ``passes_sizes`` too. The first mode
    is the baseline of the "picks" column. The pool is built in its storage dtype before the clock starts, so the
    memory column is the selection's own: on CPU the process's peak RSS above its RSS before the call
    (``VmHWM − VmRSS`` after a ``clear_refs`` reset), on CUDA ``torch.cuda.max_memory_allocated`` above the memory
    allocated before the call. Features are generated on the device."""
    memory = "peak RSS − RSS before" if device.type == "cpu" else "max_memory_allocated − allocated before"
    print(
        f"\n### Scaling: `{strategy}` (F = {frames}, d = {dim}, budget {budget:.0%}, λ = {lam}, {device.type}, "
        f"screened block {block})\n"
    )
    print(
        "| N | picks | mode | storage | features (GiB, float32) | wall time (s) | ms / pick | CPU time (s) "
        f"| pool passes | distances computed / one pass per pick | peak extra memory (GiB, {memory}) "
        "| extra / stored features | picks vs the first row |"
    )
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in sizes:
        feats = clustered_features(n, frames, dim, seed=3, device=device)
        g = difficulty(n, seed=3)
        count = resolve_budget(budget, n)
        size = feats.numel() * 4 / 2**30
        base = None
        runs = list(modes) + ([("passes", "float32", None)] if n in passes_sizes else [])
        for mode, storage, cap in runs:
            picks_wanted = min(count, cap) if cap else count
            pool = FramePool.from_features(feats, dtype=storage, device=device)
            pool.distance_bounds()  # a cached property of the pool, built once (one pass over the frames)
            stored = pool.nbytes / 2**30
            run = functools.partial(
                select_with_details,
                strategy,
                difficulty=g,
                features=pool,
                budget=picks_wanted,
                lam=lam,
                device=device,
                lazy=mode == "lazy",
                block=block if mode == "screened" else 1,
                compute_diversity=False,
            )
            result, seconds, cpu, peak = measure(run, device)
            picks = result.indices
            passes = result.params.get("pool_passes", float("nan"))
            work = result.params.get("distances_computed", float("nan")) / (n * (picks_wanted - 1))
            if base is None:
                base, changed = picks, "—"
            else:
                common = min(len(base), len(picks))
                moved = len(set(base[:common]) ^ set(picks[:common])) // 2
                first = next((k for k, (a, b) in enumerate(zip(base, picks)) if a != b), None)
                changed = (
                    f"identical over the first {common:,}"
                    if first is None
                    else f"{moved} of {common:,} differ as a set; order differs from rank {first + 1}"
                )
            label = mode if picks_wanted == count else f"{mode} (first {picks_wanted:,} picks)"
            print(
                f"| {n:,} | {picks_wanted:,} | {label} | {storage} | {size:.2f} | {seconds:.2f} "
                f"| {1e3 * seconds / max(1, picks_wanted - 1):.3f} | {cpu:.1f} | {passes} | {work:.3f} "
                f"| {peak / 2**30:.3f} | {peak / 2**30 / stored:.3f} | {changed} |",
                flush=True,
            )
            del pool, run
        del feats


def main() -> None:
    """Parse arguments and print every section."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--budget", type=float, default=0.05)
    p.add_argument("--lam", type=float, default=0.25)
    p.add_argument("--reference-size", type=int, default=2000, help="0 skips the reference comparison")
    p.add_argument("--floor-size", type=int, default=20000, help="0 skips the per-step comparison")
    p.add_argument("--floor-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000, 100_000])
    p.add_argument("--no-half", action="store_true", help="skip the 16-bit-storage runs")
    p.add_argument(
        "--modes",
        nargs="+",
        type=parse_mode,
        default=None,
        help="scaling section: MODE:DTYPE[:PICKS] runs (lazy, passes, screened; float32, float16, bfloat16; a cap on "
        "the picks), the first one the baseline of the picks column (default: the device's default mode in float32 "
        "and in --half-dtype, and on CUDA the screened mode too)",
    )
    p.add_argument("--block", type=int, default=32, help="picks per pool pass of the screened mode")
    p.add_argument("--half-dtype", default="float16", choices=["float16", "bfloat16"], help="16-bit storage dtype")
    p.add_argument("--strategy", default="mds", choices=["mds", "diversity", "coreset"], help="scaling section")
    p.add_argument(
        "--passes-sizes",
        type=int,
        nargs="*",
        default=[10_000],
        help="sizes at which the scaling section also runs one pool pass per pick (lazy=False; on CPU)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")
    print("## Selection benchmark\n")
    print(f"Hardware: {hardware(device)}.  ")
    print(f"Load average at start: {load()}.")
    if args.reference_size:
        compare_with_reference(args.reference_size, args.frames, args.dim, args.budget, args.lam, device)
    if args.floor_size:
        step_versus_floor(args.floor_size, args.frames, args.dim, args.floor_steps, args.repeats, device)
    if args.sizes:
        scaling(
            args.sizes,
            args.frames,
            args.dim,
            args.budget,
            args.lam,
            device,
            args.modes or default_modes(device, args.half_dtype, not args.no_half),
            passes_sizes=set(args.passes_sizes),
            strategy=args.strategy,
            block=args.block,
        )
    print(f"\nLoad average at end: {load()}.")


if __name__ == "__main__":
    main()
