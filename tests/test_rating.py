"""The rating sessions (order, training, resume, answers on disk) and the app driven through gradio_client."""

from __future__ import annotations

import csv
import socket

import pytest
from conftest import load_recipe
from datasets import Dataset

from mds_vqa.gmad import gmad_competition, read_2afc_answers, study_dataset, summarize_2afc
from mds_vqa.rating import (
    RATING_COLUMNS,
    Item,
    PairStudy,
    RatingStudy,
    anchor_items,
    check_rater,
    pair_study,
    presentation_order,
    rating_study,
)
from mds_vqa.ratings_import import read_ratings


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _items(n: int) -> list[Item]:
    return [Item(f"v{i:02d}", (f"/videos/v{i:02d}.mp4",)) for i in range(n)]


def test_each_rater_order_is_a_permutation_seeded_by_the_rater_id():
    ids = [f"v{i:02d}" for i in range(30)]
    first = presentation_order(ids, "r01")
    assert sorted(first) == ids and first != ids
    assert presentation_order(ids, "r01") == first  # the same rater always sees the same order
    assert presentation_order(ids, "r02") != first  # another rater, another order
    assert presentation_order(ids, "r01", seed=1) != first  # the study's seed changes it too
    with pytest.raises(ValueError, match="Rater id 'jane doe@example.org' is not valid"):
        check_rater("jane doe@example.org")


def test_training_comes_first_is_not_counted_and_every_answer_is_on_disk_at_once(tmp_path):
    answers = tmp_path / "ratings.csv"
    anchors = [Item("anchor_bad", ("/a/bad.mp4",)), Item("anchor_good", ("/a/good.mp4",))]
    study = RatingStudy(_items(4), answers, scale="acr", training=anchors)
    state = study.state("r01")
    assert (state.phase, state.item.item_id, state.done, state.total) == ("training", "anchor_bad", 0, 2)
    order = presentation_order([f"v{i:02d}" for i in range(4)], "r01")
    given = [("anchor_bad", 1), ("anchor_good", 5)] + [(vid, i % 5 + 1) for i, vid in enumerate(order)]
    for n, (vid, score) in enumerate(given, start=1):
        state = study.answer("r01", vid, score)
        assert len(_rows(answers)) == n  # on disk before the next video is served
    assert state.phase == "done" and (state.main_done, state.main_total) == (4, 4)
    rows = _rows(answers)
    assert list(rows[0]) == list(RATING_COLUMNS)
    assert [r["phase"] for r in rows] == ["training"] * 2 + ["main"] * 4
    assert [r["video_id"] for r in rows[2:]] == order and [r["position"] for r in rows[2:]] == ["1", "2", "3", "4"]
    # training answers are not counted: the import drops them
    assert sorted(read_ratings(answers)["video_id"]) == sorted(order)
    with pytest.raises(ValueError, match="has answered all 4 items"):
        study.answer("r01", order[0], 3)


def test_a_rater_who_comes_back_continues_where_they_stopped_even_after_a_restart(tmp_path):
    answers = tmp_path / "ratings.csv"
    study = RatingStudy(_items(6), answers, scale="slider", training=[Item("anchor", ("/a.mp4",))])
    study.answer("r07", "anchor", 10)
    first = study.state("r07").item.item_id
    study.answer("r07", first, 62.5)
    second = study.state("r07").item.item_id
    with pytest.raises(ValueError, match=f"'{first}' is not the item being shown \\('{second}'\\)"):
        study.answer("r07", first, 40)  # a double submission is refused, not stored twice
    study.answer("r02", "anchor", 90)  # another rater in between
    # the app restarts: a new study object on the same file
    again = RatingStudy(_items(6), answers, scale="slider", training=[Item("anchor", ("/a.mp4",))])
    state = again.state("r07")
    assert (state.phase, state.item.item_id, state.done) == ("main", second, 1)
    assert again.state("r02").phase == "main" and again.state("r02").done == 0
    assert [r["score"] for r in _rows(answers)] == ["10.0", "62.5", "90.0"]


def test_answers_off_the_scale_a_foreign_header_and_a_torn_last_line(tmp_path):
    study = RatingStudy(_items(3), tmp_path / "r.csv", scale="acr")
    current = study.state("r01").item.item_id
    for bad, why in ((6, r"lie in \[1, 5\]"), (2.5, "one of 1, 2, 3, 4, 5"), ("good", "must be a number")):
        with pytest.raises(ValueError, match=why):
            study.answer("r01", current, bad)
    assert len(_rows(tmp_path / "r.csv")) == 0
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"other.csv has the columns \['a', 'b'\]"):
        RatingStudy(_items(3), tmp_path / "other.csv")
    study.answer("r01", current, 4)
    with open(tmp_path / "r.csv", "a") as fh:
        fh.write("v01,r01,3,ma")  # a crash in the middle of a write
    resumed = RatingStudy(_items(3), tmp_path / "r.csv", scale="acr")
    assert resumed.state("r01").done == 1
    following = resumed.state("r01").item.item_id
    resumed.answer("r01", following, 2)
    assert [r["video_id"] for r in _rows(tmp_path / "r.csv") if r["time"]] == [current, following]


def test_anchors_by_id_or_spread_over_a_column():
    pool = Dataset.from_dict(
        {"video_id": ["a", "b", "c", "d", "e"], "video": [f"/{c}.mp4" for c in "abcde"], "mos": [3, 1, None, 5, 2]}
    )
    assert [it.item_id for it in anchor_items(pool, anchor_column="mos")] == ["b", "d"]  # the worst, the best
    assert [it.item_id for it in anchor_items(pool, anchor_column="mos", num_anchors=3)] == ["b", "a", "d"]
    assert [it.item_id for it in anchor_items(pool, anchors=["e", "a"])] == ["e", "a"]
    assert anchor_items(pool) == []
    with pytest.raises(KeyError, match=r"not in the anchor pool: \['zz'\]"):
        anchor_items(pool, anchors=["zz"])


def _pairs(tmp_path) -> Dataset:
    """A gMAD pairs Dataset as recipes/gmad.py saves it, on (empty) video files."""
    ids = [f"v{i}" for i in range(12)]
    videos = []
    for vid in ids:
        (tmp_path / "videos").mkdir(exist_ok=True)
        (tmp_path / "videos" / f"{vid}.mp4").write_bytes(b"")
        videos.append(str(tmp_path / "videos" / f"{vid}.mp4"))
    a = [1.0, 1.1, 1.2, 2.0, 2.1, 2.2, 3.0, 3.1, 3.2, 4.0, 4.1, 4.2]
    b = [1.0, 3.0, 2.0, 4.0, 1.5, 2.5, 3.5, 1.0, 2.0, 5.0, 3.0, 1.0]
    levels = gmad_competition({"A": a, "B": b}, n_levels=3, ids=ids)
    return study_dataset(levels, videos, seed=0)


def test_2afc_answers_are_read_by_the_gmad_summary(tmp_path):
    pairs = _pairs(tmp_path)
    study = pair_study(pairs, tmp_path / "gmad_answers.csv")
    assert isinstance(study, PairStudy) and len(study.items) == len(pairs)
    for rater in ("r01", "r02"):
        while (state := study.state(rater)).item is not None:
            study.answer(rater, state.item.item_id, "left")
    with pytest.raises(ValueError, match="'left' or 'right'"):
        pair_study(pairs, tmp_path / "more.csv").answer("r03", study.state("r03").item.item_id, "up")
    summary = summarize_2afc(pairs, read_2afc_answers(tmp_path / "gmad_answers.csv"))
    votes = summary.pairs.set_index("pair_id")
    left_is_high = dict(zip(pairs["pair_id"], pairs["left_is_high"]))
    for pid, high in left_is_high.items():
        assert (votes.loc[pid, "n_high"], votes.loc[pid, "n_low"]) == ((2, 0) if high else (0, 2))
    # and recipes/gmad.py reuses the saved pairs and writes its summary from the same file
    gmad = load_recipe("gmad")
    pairs.save_to_disk(str(tmp_path / "gmad" / "pairs"))
    args = gmad.GmadArguments(
        output_dir=str(tmp_path / "gmad"), pictures=False, answers=str(tmp_path / "gmad_answers.csv")
    )
    result = gmad.main(args)
    assert (tmp_path / "gmad" / "gmad_summary.json").is_file()
    assert int(result["summary"].pairs["n_high"].sum() + result["summary"].pairs["n_low"].sum()) == 2 * len(pairs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(90)
def test_the_app_driven_through_gradio_client_writes_every_answer(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    videos = tmp_path / "videos"
    videos.mkdir()
    names = [f"clip{i}.mp4" for i in range(5)]
    for name in names:
        (videos / name).write_bytes(b"")
    subset = Dataset.from_dict(
        {
            "rank": list(range(1, 6)),
            "video_id": [n[:-4] for n in names],
            "video": names,  # relative: found through video_root
            "dataset": ["toy"] * 5,
            "g": [4.0, 1.0, 3.0, 5.0, 2.0],
        }
    )
    subset.save_to_disk(str(tmp_path / "subset"))
    _pairs(tmp_path).save_to_disk(str(tmp_path / "pairs"))
    rate = load_recipe("rate")
    args = rate.RateArguments(
        output_dir=str(tmp_path / "ratings"),
        subset_path=str(tmp_path / "subset"),
        pairs_path=str(tmp_path / "pairs"),
        video_root=str(videos),
        anchor_column="g",
        server_port=_free_port(),
    )
    app, url = rate.main(args)
    try:
        assert url.startswith("http://127.0.0.1:")
        client = Client(url, verbose=False)
        state = client.predict("r01", api_name="/start")
        assert (state["phase"], state["item_id"], state["total"]) == ("training", "clip1", 2)  # lowest g first
        assert state["videos"] == [str(videos.resolve() / "clip1.mp4")]
        state = client.predict("r01", "clip1", 1, api_name="/rate")
        state = client.predict("r01", "clip3", 5, api_name="/rate")
        order = presentation_order(subset["video_id"], "r01")
        assert (state["phase"], state["item_id"]) == ("main", order[0])
        with pytest.raises(AppError, match="is not the item being shown"):
            client.predict("r01", order[1], 3, api_name="/rate")
        for i, vid in enumerate(order[:3]):
            state = client.predict("r01", vid, i + 2, api_name="/rate")
        assert (state["main_done"], state["item_id"]) == (3, order[3])
        assert client.predict("r01", api_name="/start")["item_id"] == order[3]  # a closed tab resumes here
        rows = _rows(tmp_path / "ratings" / "ratings.csv")
        assert [(r["video_id"], r["score"], r["phase"]) for r in rows] == [
            ("clip1", "1", "training"),
            ("clip3", "5", "training"),
            *[(vid, str(i + 2), "main") for i, vid in enumerate(order[:3])],
        ]
        assert {r["rater"] for r in rows} == {"r01"}
        pair = client.predict("r09", api_name="/start_pairs")
        client.predict("r09", pair["item_id"], "right", api_name="/choose")
        answers = read_2afc_answers(tmp_path / "ratings" / "gmad_answers.csv")
        assert answers[["pair_id", "preferred"]].values.tolist() == [[pair["item_id"], "right"]]
    finally:
        app.close()
    assert (tmp_path / "ratings" / "provenance.json").is_file()


def test_building_a_study_from_a_subset_checks_its_columns(tmp_path):
    with pytest.raises(KeyError, match="no 'video' column"):
        rating_study(Dataset.from_dict({"video_id": ["a"]}), tmp_path / "r.csv")
    with pytest.raises(ValueError, match=r"duplicate ids: \['a'\]"):
        rating_study(Dataset.from_dict({"video_id": ["a", "a"], "video": ["/a", "/b"]}), tmp_path / "r.csv")
