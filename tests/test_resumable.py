import json

import pytest
from datasets import Dataset

from mds_vqa.resumable import (
    INDEX_COLUMN,
    RUN_CONFIG_FILE,
    InitialFailuresError,
    ResumableRun,
    RunConfigError,
    check_run_config,
    load_failures,
    load_results,
    merge_results,
)
from mds_vqa.video import VideoReadError


class Interrupt(KeyboardInterrupt):
    """Stands for Ctrl-C arriving in the middle of a run."""


def _rows(n):
    return [{"video_id": f"v{i}", "x": i} for i in range(n)]


def test_every_item_is_computed_once_and_merged_back_in_order(tmp_path):
    calls = []

    def square(rows):
        calls.extend(r["x"] for r in rows)
        return [{"y": r["x"] ** 2} for r in rows]

    summary = ResumableRun(tmp_path, square, batch_size=3, flush_every=3).run(_rows(10))
    assert summary.computed == 10 and summary.failed == 0 and sorted(calls) == list(range(10))
    ds, missing = merge_results(Dataset.from_list(_rows(10)), tmp_path)
    assert ds["y"] == [i * i for i in range(10)] and missing == []


def test_a_killed_run_resumes_without_recomputing_or_losing_anything(tmp_path):
    calls = []

    def flaky(rows):
        if rows[0]["x"] == 6 and not calls_after_kill:
            raise Interrupt()
        calls.extend(r["x"] for r in rows)
        return [{"y": r["x"] + 100} for r in rows]

    calls_after_kill = []
    with pytest.raises(KeyboardInterrupt):
        ResumableRun(tmp_path, flaky, batch_size=2, flush_every=4).run(_rows(10))
    first = list(calls)
    assert first == [0, 1, 2, 3, 4, 5]  # batches [0,1] [2,3] [4,5] done, the 4th batch was interrupted
    # the unflushed batch [4,5] was written on the way out: nothing computed is lost
    assert sorted(load_results(tmp_path).column(INDEX_COLUMN).to_pylist()) == first

    calls.clear()
    calls_after_kill.append(True)
    summary = ResumableRun(tmp_path, flaky, batch_size=2, flush_every=4).run(_rows(10))
    assert calls == [6, 7, 8, 9]  # only what was missing
    assert summary.skipped_done == 6 and summary.computed == 4
    ds, missing = merge_results(Dataset.from_list(_rows(10)), tmp_path)
    assert ds["y"] == [i + 100 for i in range(10)] and missing == []


def test_a_bad_video_is_isolated_recorded_and_skipped(tmp_path):
    seen = []

    def read(rows):
        seen.append([r["x"] for r in rows])
        for r in rows:
            if r["x"] == 4:
                raise VideoReadError(f"/data/{r['video_id']}.mp4", "moov atom not found")
        return [{"y": float(r["x"])} for r in rows]

    summary = ResumableRun(tmp_path, read, batch_size=3).run(_rows(7))
    assert summary.computed == 6 and summary.failed == 1
    failures = load_failures(tmp_path)
    assert failures == [
        {INDEX_COLUMN: 4, "id": "v4", "reason": "VideoReadError: Cannot read video /data/v4.mp4: moov atom not found"}
    ]
    assert [3, 4, 5] in seen and [3] in seen and [5] in seen  # the failing batch was retried item by item
    ds, missing = merge_results(Dataset.from_list(_rows(7)), tmp_path)
    assert ds["y"][4] is None and missing == [4]

    seen.clear()
    again = ResumableRun(tmp_path, read, batch_size=3).run(_rows(7))
    assert seen == [] and again.skipped_done == 7  # a recorded failure is not retried by default
    ResumableRun(tmp_path, read, batch_size=3, retry_failures=True).run(_rows(7))
    assert seen == [[4]]


def test_strict_mode_raises_on_the_first_bad_video(tmp_path):
    def read(rows):
        raise VideoReadError("/data/x.mp4", "empty")

    with pytest.raises(VideoReadError, match="x.mp4"):
        ResumableRun(tmp_path, read, strict=True).run(_rows(2))


def test_other_errors_are_not_swallowed(tmp_path):
    def broken(rows):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        ResumableRun(tmp_path, broken).run(_rows(3))


def test_processes_split_the_work_and_share_the_output(tmp_path):
    def double(rows):
        return [{"y": 2 * r["x"]} for r in rows]

    a = ResumableRun(tmp_path, double, process_index=0, num_processes=2).run(_rows(9))
    b = ResumableRun(tmp_path, double, process_index=1, num_processes=2).run(_rows(9))
    assert (a.computed, b.computed) == (5, 4)
    ds, missing = merge_results(Dataset.from_list(_rows(9)), tmp_path)
    assert ds["y"] == [2 * i for i in range(9)] and missing == []


def test_a_result_count_mismatch_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="returned 1 results for 2 rows"):
        ResumableRun(tmp_path, lambda rows: [{"y": 0}], batch_size=2).run(_rows(2))


def test_merge_refuses_results_from_a_bigger_pool(tmp_path):
    ResumableRun(tmp_path, lambda rows: [{"y": 1} for _ in rows]).run(_rows(5))
    with pytest.raises(RuntimeError, match="pool has 3 rows"):
        merge_results(Dataset.from_list(_rows(3)), tmp_path)
    assert json.dumps(load_failures(tmp_path)) == "[]"


def _unreadable(rows):
    raise VideoReadError(f"/mnt/videos/{rows[0]['video_id']}.mp4", "file does not exist")


def test_a_run_whose_first_items_all_fail_stops_and_keeps_their_failures(tmp_path):
    with pytest.raises(InitialFailuresError, match="first 3 items") as info:
        ResumableRun(tmp_path, _unreadable, batch_size=2, max_initial_failures=3).run(_rows(10))
    assert "v0 (row 0): VideoReadError: Cannot read video /mnt/videos/v0.mp4: file does not exist" in str(info.value)
    assert "retry_failures" in str(info.value) and len(info.value.failures) == 3
    assert [f[INDEX_COLUMN] for f in load_failures(tmp_path)] == [0, 1, 2]  # on disk, as they happened


def test_failures_after_a_success_or_with_the_guard_off_do_not_stop_the_run(tmp_path):
    def read(rows):
        if rows[0]["x"] != 0:
            raise VideoReadError(f"/data/{rows[0]['video_id']}.mp4", "moov atom not found")
        return [{"y": 0.0}]

    summary = ResumableRun(tmp_path / "a", read, batch_size=1, max_initial_failures=2).run(_rows(6))
    assert (summary.computed, summary.failed) == (1, 5)
    summary = ResumableRun(tmp_path / "b", _unreadable, batch_size=1, max_initial_failures=None).run(_rows(6))
    assert (summary.computed, summary.failed) == (0, 6)
    with pytest.raises(ValueError, match="max_initial_failures"):
        ResumableRun(tmp_path, read, max_initial_failures=-1)


def test_a_work_dir_refuses_a_resume_with_another_configuration(tmp_path):
    check_run_config(tmp_path, {"model": "a", "frames": (4, 8)}, write=False)
    assert not (tmp_path / RUN_CONFIG_FILE).exists()  # only the main process writes
    check_run_config(tmp_path, {"model": "a", "frames": (4, 8)}, write=True)
    check_run_config(tmp_path, {"frames": [4, 8], "model": "a"}, write=False)  # the same, as read back from JSON
    with pytest.raises(RunConfigError) as info:
        check_run_config(tmp_path, {"model": "b", "frames": [4, 8], "adapter": "g"}, write=False)
    message = str(info.value)
    assert "model: 'a' -> 'b'" in message and "adapter: None -> 'g'" in message and "frames" not in message
    assert f"Delete {tmp_path} to start over, or pass another work_dir" in message
