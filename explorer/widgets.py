"""Small shared Gradio building blocks, so every tab looks and reads the same."""

from __future__ import annotations

import math
import re

import gradio as gr

from explorer.images import PIXELATED

# `$...$` inline and `$$...$$` display maths
LATEX_DELIMITERS = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
PICTURE_BUTTONS = ("download", "fullscreen")
PICTURE_CAPTION = "picture-caption"  # CSS class of the caption under a pixel_picture (styled in explorer.app.CSS)


def explanation(text: str) -> gr.Markdown:
    """A Markdown block that renders LaTeX maths inline and displayed (tab intros, captions)."""
    return gr.Markdown(text, latex_delimiters=LATEX_DELIMITERS)


def pixel_picture(
    label: str, caption: str, height: int, elem_id: str | None = None, alt_text: str | None = None
) -> gr.Image:
    """An output picture of small pixel grids, shown enlarged with sharp pixels (CSS class PIXELATED), with a short
    `label` and, under the picture, a one-line `caption` that says what it shows (Markdown, maths allowed).

    The label sits in the picture's top-left corner and the icon buttons in its top-right one, over the same strip:
    a label longer than about 24 characters is cut off by them at the Sample tab's width (three pictures side by
    side at 1280 px), so the explanation goes in the caption. Only the buttons that help here are shown: download
    and full screen (not "share", which posts to a Hugging Face discussion). `alt_text`: what a screen reader says
    the picture shows (by default its label and caption, `picture_alt`)."""
    with gr.Column(min_width=160):  # the picture's own width, as an Image alone in a Row would get
        picture = gr.Image(
            elem_classes=[PIXELATED],
            label=label,
            interactive=False,
            height=height,
            elem_id=elem_id,
            buttons=list(PICTURE_BUTTONS),
            format="png",  # pixel grids: PNG is lossless and 4-10x faster to encode than WebP (explorer.gradio_cache)
            alt_text=alt_text or picture_alt(label, caption),
        )
        gr.Markdown(caption, latex_delimiters=LATEX_DELIMITERS, elem_classes=[PICTURE_CAPTION])
    return picture


def picture_alt(label: str, caption: str) -> str:
    """A picture's alt text from its label and its caption, the caption's maths as plain text: "predicted noise: the
    noise it sees in x_t (grey 0, white +3σ)"."""
    plain = caption.replace("$", "").replace("\\", "").replace("*", "")
    return f"{label}: {plain[:1].lower() + plain[1:]}"


def _as_number(value: object, message: str) -> float:
    """value as a float, or a gr.Error with `message` (None, booleans and non-numbers are refused)."""
    if value is None or isinstance(value, bool):
        raise gr.Error(message)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise gr.Error(message) from None


def whole_number(label: str, value: object, low: int, high: int) -> int:
    """value as an int in [low, high], or a gr.Error that names the control and the allowed range (for values
    that reach a callback from the page or straight from the API)."""
    message = f"{label} must be a whole number from {low} to {high}, got {value!r}"
    number = _as_number(value, message)
    if not number.is_integer() or not low <= number <= high:
        raise gr.Error(message)
    return int(number)


def bounded_number(label: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """value as a finite float in [low, high] ((low, high] with low_open), or a gr.Error naming the control."""
    bracket = "(" if low_open else "["
    message = f"{label} must be a number in {bracket}{low:g}, {high:g}], got {value!r}"
    number = _as_number(value, message)
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        raise gr.Error(message)
    return number


def session_key(request: gr.Request | None) -> str | None:
    """The caller's Gradio session hash (one per browser tab or gradio_client Client); None outside a request."""
    return getattr(request, "session_hash", None) if request is not None else None


def progress_html(done: int, total: int, text: str) -> str:
    """A progress bar filled to done/total with a line of text under it (the Sample tab's live progress). A screen
    reader hears it as a progress bar ("done of total") and reads the text, whose **bold** is made bold (gr.HTML
    shows Markdown as it is)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    share = 100 * done / max(total, 1)
    return (
        f'<div class="sample-progress" data-done="{done}" data-total="{total}">'
        f'<div role="progressbar" aria-valuemin="0" aria-valuemax="{total}" aria-valuenow="{done}" '
        f'aria-valuetext="{done} of {total}" style="background:#e5e7eb;border-radius:6px;height:14px;width:100%">'
        f'<div style="background:#0072B2;border-radius:6px;height:14px;width:{share:.1f}%"></div></div>'
        f"<p>{text}</p></div>"
    )


def file_box(path: str | None) -> gr.File:
    """A download box shows only when it holds a file: `box.change(file_box, box, box)` (an empty box takes room
    while a run goes)."""
    return gr.File(visible=bool(path))


def number_box(value: float, label: str, bounds: tuple[float, float], info: str, **options: object) -> gr.Number:
    """A number control with its range (the page clamps to it; the callbacks check it again) and its one-line
    explanation."""
    return gr.Number(value, label=label, minimum=bounds[0], maximum=bounds[1], info=info, **options)


BETA_START_RANGE = (1e-6, 0.5)  # the schedule parameters' boxes, in the Schedules tab and the Train tab alike
BETA_END_RANGE = (1e-6, 0.999)
COSINE_S_RANGE = (1e-5, 0.5)


def schedule_parameter_boxes(
    beta_start: float, beta_end: float, cosine_s: float, elem_prefix: str | None = None
) -> tuple[gr.Number, gr.Number, gr.Number]:
    """The beta_start, beta_end and cosine s boxes (in the current row), the same wherever a schedule is chosen;
    `elem_prefix` gives them ids like "train-beta-start"."""

    def elem_id(name: str) -> str | None:
        return f"{elem_prefix}-{name}" if elem_prefix else None

    return (
        number_box(
            beta_start,
            "beta_start",
            BETA_START_RANGE,
            "Noise added at the first step (linear, sigmoid, scaled_linear).",
            elem_id=elem_id("beta-start"),
        ),
        number_box(
            beta_end,
            "beta_end",
            BETA_END_RANGE,
            "Noise added at the last step (linear, sigmoid, scaled_linear).",
            elem_id=elem_id("beta-end"),
        ),
        number_box(
            cosine_s,
            "cosine s",
            COSINE_S_RANGE,
            "Small offset that keeps cosine's first steps from being too tiny.",
            elem_id=elem_id("cosine-s"),
        ),
    )
