"""The rating app: a local Gradio page over the studies of :mod:`mds_vqa.rating`.

Two tabs: **Rate videos** (single stimulus, one video at a time, ACR 1–5 or a 0–100 slider, the training videos
first) and **Compare pairs** (the 2AFC study of gMAD pairs: left or right). A rater types their id and presses
Start / resume: the session continues where that id stopped. A progress bar shows the phase and the count.

Every function of the page is also a named API endpoint, callable with ``gradio_client.Client(url).predict(...,
api_name=...)``; each returns the rater's state as a dict (``phase``: ``training`` / ``main`` / ``done``,
``item_id``, ``videos``, ``done``/``total`` in this phase, ``main_done``/``main_total``):

- ``/start`` ``(rater)``: start or resume the rating study;
- ``/rate`` ``(rater, video_id, score)``: answer the video being shown to that rater;
- ``/start_pairs`` ``(rater)``: start or resume the 2AFC study;
- ``/choose`` ``(rater, pair_id, preferred)``: ``left`` or ``right`` for the pair being shown.

An invalid answer (an id other than the one being shown, a score off the scale) is refused with the reason.
The server listens on 127.0.0.1 unless ``server_name`` says otherwise, and serves only the studies' video folders.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

from .rating import ACR_LABELS, DONE, TRAINING, PairStudy, RatingStudy, SessionState, Study

logger = logging.getLogger(__name__)

__all__ = ["build_app", "launch_app"]

_RATING_HELP = (
    "Watch each video to the end, then rate its **overall quality**. The first videos are a short training: "
    "they show the range of quality you will see and are not counted. Your answers are saved as you give them: "
    "you can stop at any time and continue later with the same rater id."
)
_PAIR_HELP = (
    "Watch both videos, then say which one has the **better overall quality**. There is always an answer: "
    "pick the one you prefer even when they look alike."
)


def _progress_html(state: dict[str, Any]) -> str:
    """A progress bar and a line saying where the rater stands (``state``: :meth:`SessionState.to_dict`)."""
    done, total = state["done"], state["total"]
    if state["phase"] == DONE:
        text = f"Done: {state['main_done']} of {state['main_total']} answered. Thank you!"
    elif state["phase"] == TRAINING:
        text = f"Training: video {done + 1} of {total} (not counted)"
    else:
        text = f"Item {done + 1} of {total}"
    return (
        f'<div><progress value="{done}" max="{max(total, 1)}" style="width:100%"></progress>'
        f"<p>{html.escape(text)}</p></div>"
    )


def _guard(fn: Callable[..., SessionState]) -> Callable[..., dict[str, Any]]:
    """``fn``'s state as a dict; its ``ValueError``/``KeyError`` shown to the rater (and the API client)."""
    import gradio as gr

    def call(*args: Any) -> dict[str, Any]:
        try:
            return fn(*args).to_dict()
        except (ValueError, KeyError) as err:
            raise gr.Error(str(err)) from err

    return call


def _api(study: Study, start_name: str, answer_name: str, answer_param: str) -> None:
    """The study's two named API endpoints (typed signatures: ``gr.api`` reads them)."""
    import gradio as gr

    start_fn = _guard(study.state)
    answer_fn = _guard(study.answer)

    def start(rater: str) -> dict:
        """Start or resume a rater's session; returns their state."""
        return start_fn(rater)

    if answer_param == "score":

        def answer(rater: str, video_id: str, score: float) -> dict:
            """Rate the video being shown to the rater; returns their next state."""
            return answer_fn(rater, video_id, score)

    else:

        def answer(rater: str, pair_id: str, preferred: str) -> dict:
            """Answer the pair being shown to the rater: 'left' or 'right'; returns their next state."""
            return answer_fn(rater, pair_id, preferred)

    gr.api(start, api_name=start_name)
    gr.api(answer, api_name=answer_name)


def _rating_tab(study: RatingStudy) -> None:
    """The single-stimulus tab: rater id, video, the scale, a submit button, progress."""
    import gradio as gr

    gr.Markdown(_RATING_HELP)
    with gr.Row():
        rater = gr.Textbox(label="Rater id", placeholder="e.g. r07", scale=3)
        start = gr.Button("Start / resume", variant="primary", scale=1)
    progress = gr.HTML()
    video = gr.Video(label="Video", autoplay=True, interactive=False, height=480)
    if study.scale == "acr":
        score = gr.Radio([(f"{v} {label}", v) for v, label in ACR_LABELS], label="Overall quality")
    else:
        score = gr.Slider(0, 100, value=50, step=1, label="Overall quality (0 = bad, 100 = excellent)")
    submit = gr.Button("Submit rating", variant="primary")
    item = gr.State(None)
    reset = None if study.scale == "acr" else 50
    state_of, answer = _guard(study.state), _guard(study.answer)

    def show(state: dict) -> tuple:
        return (state["videos"][0] if state["videos"] else None), state["item_id"], _progress_html(state), reset

    def on_start(rater_id: str) -> tuple:
        return show(state_of(rater_id))

    def on_submit(rater_id: str, item_id: str | None, value: Any) -> tuple:
        if item_id is None:
            raise gr.Error("Press Start / resume first.")
        if value is None:
            raise gr.Error("Pick a score first.")
        return show(answer(rater_id, item_id, value))

    outputs = [video, item, progress, score]
    start.click(on_start, rater, outputs, api_name="ui_start", api_visibility="private")
    submit.click(on_submit, [rater, item, score], outputs, api_name="ui_rate", api_visibility="private")


def _pair_tab(study: PairStudy) -> None:
    """The 2AFC tab: rater id, both videos side by side, one button per side, progress."""
    import gradio as gr

    gr.Markdown(_PAIR_HELP)
    with gr.Row():
        rater = gr.Textbox(label="Rater id", placeholder="e.g. r07", scale=3)
        start = gr.Button("Start / resume", variant="primary", scale=1)
    progress = gr.HTML()
    with gr.Row():
        left = gr.Video(label="Left", autoplay=True, interactive=False, height=360)
        right = gr.Video(label="Right", autoplay=False, interactive=False, height=360)
    with gr.Row():
        pick_left = gr.Button("Left is better")
        pick_right = gr.Button("Right is better")
    item = gr.State(None)
    state_of, answer = _guard(study.state), _guard(study.answer)

    def show(state: dict) -> tuple:
        videos = state["videos"] or [None, None]
        return videos[0], videos[1], state["item_id"], _progress_html(state)

    def on_start(rater_id: str) -> tuple:
        return show(state_of(rater_id))

    def choose(side: str) -> Callable[[str, str | None], tuple]:
        def on_choose(rater_id: str, item_id: str | None) -> tuple:
            if item_id is None:
                raise gr.Error("Press Start / resume first.")
            return show(answer(rater_id, item_id, side))

        return on_choose

    outputs = [left, right, item, progress]
    start.click(on_start, rater, outputs, api_name="ui_start_pairs", api_visibility="private")
    pick_left.click(choose("left"), [rater, item], outputs, api_name="ui_left", api_visibility="private")
    pick_right.click(choose("right"), [rater, item], outputs, api_name="ui_right", api_visibility="private")


def build_app(
    ratings: RatingStudy | None = None, pairs: PairStudy | None = None, *, title: str = "Video quality rating"
) -> Any:
    """The Gradio ``Blocks`` of the studies given (at least one): one tab each, and their API endpoints."""
    import gradio as gr

    if ratings is None and pairs is None:
        raise ValueError("Nothing to rate: give a rating study (a subset) and/or a 2AFC study (gMAD pairs).")
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {html.escape(title)}")
        with gr.Tabs():
            if ratings is not None:
                with gr.Tab("Rate videos"):
                    _rating_tab(ratings)
            if pairs is not None:
                with gr.Tab("Compare pairs"):
                    _pair_tab(pairs)
        if ratings is not None:
            _api(ratings, "start", "rate", "score")
        if pairs is not None:
            _api(pairs, "start_pairs", "choose", "preferred")
    return app


def launch_app(
    app: Any,
    studies: list[Study],
    *,
    server_name: str = "127.0.0.1",
    server_port: int | None = None,
    quiet: bool = False,
) -> str:
    """Start serving ``app`` without blocking (``app.block_thread()`` waits, ``app.close()`` stops it); returns its
    URL. Only the folders holding the studies' videos are served."""
    folders = sorted({f for s in studies for f in s.video_folders()})
    _, url, _ = app.launch(
        server_name=server_name,
        server_port=server_port,
        prevent_thread_lock=True,
        show_error=True,
        allowed_paths=folders,
        quiet=quiet,
        footer_links=["api"],
    )
    logger.info(
        "Rating app at %s (raters: open it and enter your id); serving videos from %d folder(s)", url, len(folders)
    )
    return url
