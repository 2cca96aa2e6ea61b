"""The Train tab's "2D: my drawing" data set: a canvas to click your own 2D data set onto, then train on it live
like the toy sets.

Each click adds a small cloud of points around it (or one point, with spread 0): about 10-30 clicks draw a shape.
Undo drops the last click, Clear all of them. For keyboard users and scripts, points can also be typed, one "x, y"
per line (each line adds what a click there would). The drawing is the user's own (explorer.drawing.Drawing in their
session); Start and Step train on it, normalised the way the toy sets are (core.drawn_points.drawn_dataset). API:
/drawing_add_points (typed points), /drawing_undo, /drawing_clear; a click's pixel arrives through the canvas's
select event.
"""

from __future__ import annotations

import dataclasses

import gradio as gr
import numpy as np

from core.drawn_points import DRAWING, MAX_SPREAD, MIN_DRAWN_POINTS, drawing_digest, drawn_dataset, parse_points
from core.training import TrainConfig
from explorer.drawing import CANVAS_PIXELS, Drawing, canvas_picture, pixel_to_plane
from explorer.sessions import SessionRegistry, UserSession
from explorer.widgets import bounded_number, session_key

DRAWING_LABEL = "2D: my drawing (click points on a canvas)"
DEFAULT_SPREAD = 0.04
INTRO = (
    "Click on the canvas to draw your own 2D data set: each click adds a small cloud of points. "
    "Draw a shape with 10-30 clicks, then press **Start training**."
)
TYPED_HELP = "One point per line as x, y (each from -1 to 1); each line adds what a click there would."


def drawing_of(session: UserSession) -> Drawing:
    """The session's drawing (a new, empty one the first time)."""
    if not isinstance(session.drawing, Drawing):
        session.drawing = Drawing()
    return session.drawing


def count_text(drawing: Drawing) -> str:
    """One line on the drawing: how many points from how many clicks, and whether Start can use it."""
    n, clicks = drawing.count, len(drawing.strokes)
    ready = (
        "Ready: choose the settings above and press **Start training**."
        if n >= MIN_DRAWN_POINTS
        else f"Training needs at least {MIN_DRAWN_POINTS} points."
    )
    clicks_text = f"{clicks} click{'s' * (clicks != 1)} or typed line{'s' * (clicks != 1)}"
    return f"**{n} point{'s' * (n != 1)}** from {clicks_text}. {ready}"


def shown_for(dataset_label: str) -> gr.Group:
    """The drawing's group, shown when the Train tab's dataset is the drawing."""
    return gr.Group(visible=dataset_label == DRAWING_LABEL)


class DrawingPanel:
    """The drawing's callbacks, bound to one SessionRegistry (each user draws their own)."""

    def __init__(self, registry: SessionRegistry):
        self.registry = registry

    def _drawing(self, request: gr.Request | None) -> Drawing:
        return drawing_of(self.registry.session(session_key(request)))

    def _shown(self, drawing: Drawing) -> tuple[np.ndarray, str]:
        return drawing.picture(), count_text(drawing)

    def _add(self, drawing: Drawing, centers: list[tuple[float, float]], spread: float) -> tuple[np.ndarray, str]:
        spread = bounded_number("spread", spread, 0.0, MAX_SPREAD)
        try:
            drawing.add(centers, spread)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return self._shown(drawing)

    def click(self, spread: float, event: gr.SelectData, request: gr.Request | None = None) -> tuple:
        """Callback of a click on the canvas (its pixel in `event.index`): a cloud there; (canvas, count line)."""
        index = event.index if isinstance(event.index, (list, tuple)) and len(event.index) == 2 else None
        if index is None or not all(isinstance(v, (int, float)) and 0 <= v < CANVAS_PIXELS for v in index):
            raise gr.Error("That click was outside the canvas: click inside the square.")
        return self._add(self._drawing(request), [pixel_to_plane(*index)], spread)

    def add_typed(self, text: str, spread: float, request: gr.Request | None = None) -> tuple:
        """Callback of "Add typed points": each "x, y" line adds what a click there would; (canvas, count line)."""
        try:
            points = parse_points(text)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return self._add(self._drawing(request), [tuple(p) for p in points.tolist()], spread)

    def undo(self, request: gr.Request | None = None) -> tuple:
        """Callback of Undo: the last click (or typed line) is dropped; (canvas, count line)."""
        drawing = self._drawing(request)
        drawing.undo()
        return self._shown(drawing)

    def clear(self, request: gr.Request | None = None) -> tuple:
        """Callback of Clear: an empty canvas; (canvas, count line)."""
        drawing = self._drawing(request)
        drawing.clear()
        return self._shown(drawing)

    def training_input(self, config: TrainConfig, session: UserSession):
        """(config, data set) for Start and Step: for "drawing", the session's drawing as a checked, normalised
        training set, with its digest in config.extra (so a changed drawing is a changed config); else (config,
        None: the Trainer loads the named set). gr.Error when the drawing cannot be trained on (too few points)."""
        if config.dataset != DRAWING:
            return config, None
        points = drawing_of(session).points()
        try:
            data = drawn_dataset(points)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return dataclasses.replace(config, extra={**config.extra, DRAWING: drawing_digest(points)}), data

    def build(self) -> gr.Group:
        """The canvas, its controls and the typed-points box, in a group shown only for the drawing data set."""
        with gr.Group(visible=False, elem_id="train-drawing") as self.group:
            gr.Markdown(INTRO)
            self.canvas = gr.Image(
                canvas_picture(None),
                label="Your drawing: click to add points (x, y from -1 to 1)",
                interactive=False,
                height=CANVAS_PIXELS,
                format="png",
                buttons=[],
                elem_id="train-drawing-canvas",
                alt_text="Your drawing: the points of your 2D data set on a grid from -1 to 1 (type points below)",
            )
            self.spread = gr.Slider(
                0,
                MAX_SPREAD,
                value=DEFAULT_SPREAD,
                step=0.01,
                label="Cloud around each click",
                info="0: one point exactly where you click; more: 12 points spread that far around it.",
            )
            self.count = gr.Markdown(count_text(Drawing()), elem_id="train-drawing-count")
            with gr.Row():
                self.undo_button = gr.Button("Undo last click", size="sm", elem_id="train-drawing-undo")
                self.clear_button = gr.Button("Clear", size="sm", elem_id="train-drawing-clear")
            self.typed = gr.Textbox(
                label="Or type points", info=TYPED_HELP, lines=3, placeholder="0.5, -0.2", elem_id="train-drawing-text"
            )
            self.add_button = gr.Button("Add typed points", size="sm", elem_id="train-drawing-add")
        return self.group

    def wire(self, dataset: gr.Dropdown) -> None:
        """The group shows for the drawing data set; the canvas follows clicks, typed points, Undo and Clear."""
        dataset.change(shown_for, dataset, self.group, api_name=False)
        shown = [self.canvas, self.count]
        self.canvas.select(self.click, self.spread, shown, api_name=False, show_progress="hidden")
        self.add_button.click(self.add_typed, [self.typed, self.spread], shown, api_name="drawing_add_points")
        self.undo_button.click(self.undo, None, shown, api_name="drawing_undo")
        self.clear_button.click(self.clear, None, shown, api_name="drawing_clear")
