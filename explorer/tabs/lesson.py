"""Lesson tab: a guided ten-minute lesson in seven short chapters, from a picture drowning in noise to guidance.

Each chapter is two to four sentences, a "Show me" button that opens the tab it talks about in a prepared state
(a view, as a shared link carries it: explorer/url_state.py), and one question for the class. The views are data
here; explorer/view_links.py wires the buttons, and tests check every view opens without a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from explorer.url_state import link_for
from explorer.widgets import explanation

INTRO = """
### A ten-minute lesson on diffusion models
Seven short chapters. Read one aloud, press **Show me** to open the part of the explorer it talks about, already
set up, try it, then ask the class the chapter's question. Every view also has a link (the address bar follows
what you do; **Copy link to this view** at the top copies it), so you can prepare your own.
"""


@dataclass(frozen=True)
class Chapter:
    """One chapter: a title, its text (Markdown, two to four sentences), the view "Show me" opens, a question."""

    title: str
    text: str
    view: dict
    question: str

    def link(self, base: str = "") -> str:
        return link_for(self.view, base)


CHAPTERS = (
    Chapter(
        "Noise drowns a picture",
        "A diffusion model learns from pictures drowned in noise, a little more at every step t. The noisy picture "
        "$x_t$ is a fading copy of the picture plus Gaussian noise, and by t = 1000 nothing of the picture is "
        "left. **Show me** opens the Forward process tab at t = 500: move the slider.",
        {"tab": "forward", "picture": "astronaut", "schedule": "linear", "t": 500},
        "At which t can you no longer tell what the picture is? Is it the same t for the other pictures?",
    ),
    Chapter(
        "Schedules decide how fast",
        "The noise schedule says how much of the picture is left at each step: $\\bar\\alpha_t$, the share of "
        "signal. The linear schedule of the first paper destroys the picture early; the cosine schedule keeps it "
        "longer, so more steps teach the model something. **Show me** plots the two side by side.",
        {"tab": "schedules", "schedules": ["linear", "cosine"]},
        "Where does each curve cross one half? Which schedule wastes more steps on pictures that are only noise?",
    ),
    Chapter(
        "The model is told t",
        "One network undoes every step, so it must be told which step it is looking at. It gets t as a list of "
        "sines and cosines of different speeds (the time embedding), like the hands of a clock. **Show me** draws "
        "those waves.",
        {"tab": "embedding", "d": 64, "T": 1000},
        "Why do low dimensions change quickly with t and high ones slowly? What could go wrong without them?",
    ),
    Chapter(
        "The U-Net",
        "The network is a U-Net: it shrinks the picture to see its overall shape, then grows it back, and skip "
        "connections carry the fine detail across. Its output has the picture's size: the noise it sees (or the "
        "clean picture it guesses). **Show me** opens the tiny one the Train tab uses.",
        {"tab": "unet", "preset": "tiny", "size": 28},
        "Where is the picture smallest inside the network? What would the output lose without the skips?",
    ),
    Chapter(
        "Train one",
        "Training shows the network a noisy picture at a random t, with its digit's label, and scores its guess of "
        "the clean picture (the loss). **Show me** sets up a one-minute run on handwritten digits: press **Start** "
        "and watch the loss fall and the preview turn from noise into the digits 0 to 9. **Step** takes one update "
        "at a time and shows it.",
        {"tab": "train"},  # the Train tab's defaults: the bundled digits, tiny, 60 s
        "The loss flattens early, but the digits keep getting better. Why might that be?",
    ),
    Chapter(
        "Sample it",
        "To draw, start from pure noise $x_T$ and let the network remove a little noise at each step until a "
        "picture is left. **Show me** opens the Sample tab with a trained digit model: press **Sample**, then drag "
        "the replay slider. In the Forward process tab you can also start from your own half-noised drawing.",
        {"tab": "sample", "model": "Digits (pretrained)"},
        "Drag the replay slider: at which step can you first tell which digit each picture will be?",
    ),
    Chapter(
        "Guidance",
        "A model that was also told the class can be asked for a given digit. Guidance pushes each step further in "
        "the direction the class adds; the fourth picture shows that direction. **Show me** asks for 3s with "
        "guidance 4: press **Sample**, then **Guidance sweep** to compare scales 0 to 8.",
        {"tab": "sample", "model": "Digits by class (pretrained)", "class": "3", "guidance": 4},
        "What do you gain from more guidance, and what do you lose?",
    ),
)


@dataclass
class LessonTab:
    """The chapters' "Show me" buttons, in chapter order (view_links wires them)."""

    buttons: list[gr.Button]
    chapters: tuple[Chapter, ...] = CHAPTERS


def build_tab() -> LessonTab:
    """Layout of the Lesson tab (its buttons are wired by explorer.view_links)."""
    explanation(INTRO)
    buttons = []
    for number, chapter in enumerate(CHAPTERS, start=1):
        with gr.Group(elem_classes=["lesson-chapter"]):
            explanation(f"#### {number}. {chapter.title}\n{chapter.text}")
            with gr.Row():
                buttons.append(gr.Button("Show me", size="sm", scale=0, min_width=120, elem_id=f"lesson-show-{number}"))
                explanation(f"**Question for the class:** {chapter.question} ([link]({chapter.link()}))")
    return LessonTab(buttons)
