"""The page side of shareable views (explorer/url_state.py): the "Copy link to this view" bar, the address bar that
follows the view, links opened on load, and the Lesson tab's "Show me" buttons.

Events: every tracked control's change (and every tab switch) rebuilds the view's query on the server
(ViewBinding.query) into a hidden box whose change rewrites the address bar in the browser; the page's load reads
the address's query (`gr.Request.query_params`) and applies it, as "Show me" applies its chapter's view, with the
same function; a view that changes a Sample model or a Train dataset applies the rest after that leader's own
callback (the `leader_events`); a view of the U-Net tab refills the preset's controls and redraws the diagram.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import gradio as gr

from explorer.models import DEFAULT_MODEL, ModelEntry, pretrained
from explorer.sampling_run import max_count
from explorer.tabs import unet
from explorer.tabs.lesson import LessonTab
from explorer.tabs.model_choice import class_choices
from explorer.unet_controls import CONTROL_COUNT
from explorer.url_state import (
    COPY_LINK_JS,
    DEFAULT_TAB,
    LEADERS,
    REPLACE_URL_JS,
    ViewBinding,
    ViewValueError,
    format_value,
    match_choice,
    parse_value,
)

LINK_INFO = "The open tab and its settings as a link (the address bar holds it too): share it with a class."


def _sample_entry(values: Mapping[str, object]) -> ModelEntry:
    entry = pretrained(str(values.get("model", DEFAULT_MODEL)))
    if entry is None:
        raise ViewValueError("needs one of the pretrained models (a link cannot carry your own)")
    return entry


def parse_class(raw: str, values: Mapping[str, object]) -> object:
    """A link's Sample class: one of the classes of the link's model (or the default model)."""
    return match_choice(raw, class_choices(_sample_entry(values)))


def sample_parsers(binding_controls: Mapping[str, Mapping[str, gr.components.Component]]) -> dict:
    """The Sample tab's controls whose range follows its model: the class menu and the number of samples."""
    count = binding_controls["sample"]["images"]

    def parse_count(raw: str, values: Mapping[str, object]) -> object:
        number = parse_value(count, raw)
        most = max_count(_sample_entry(values))
        if number > most:
            raise ViewValueError(f"is more than this model's {most}")
        return number

    return {("sample", "class"): parse_class, ("sample", "images"): parse_count}


class LinkBar:
    """ "Copy link to this view", the link, the note on a link's ignored values, and the view's state. Build it
    where it shows (above the tabs), then `wire` it once the tabs exist."""

    def __init__(self) -> None:
        with gr.Row(elem_classes=["view-link-bar"]):
            self.copy = gr.Button("Copy link to this view", size="sm", scale=0, min_width=200, elem_id="copy-view-link")
            self.link = gr.Textbox(
                show_label=False,
                placeholder=LINK_INFO,
                interactive=False,
                container=False,
                buttons=["copy"],
                scale=4,
                elem_id="view-link",
            )
        self.note = gr.Markdown(visible=False, elem_id="view-note")
        self.query = gr.Textbox(visible="hidden", elem_id="view-query")
        self.tab = gr.State(DEFAULT_TAB)
        self.pending = {tab: gr.State(None) for tab in LEADERS}
        self.binding: ViewBinding | None = None
        self.unet_outputs: list = []

    def wire(
        self,
        demo: gr.Blocks,
        tabs: gr.Tabs,
        pages: Mapping[str, gr.Tab],
        leaders: Mapping[str, tuple[gr.components.Component, gr.events.Dependency]],
        unet_report: tuple[Sequence, Sequence],
        lesson: LessonTab,
    ) -> None:
        """Bind the tracked controls of `pages` (tab id -> gr.Tab) and wire the events. `leaders`: per LEADERS tab,
        its leader control and the event its change runs; `unet_report`: the U-Net tab's report inputs (preset,
        its six controls, size, channels, objective) and outputs."""
        binding = ViewBinding.find(pages)
        binding.parsers.update(sample_parsers(binding.controls))
        self.binding = binding
        controls = binding.components()
        leader_controls = [leaders[tab][0] for tab in LEADERS]
        outputs = [tabs, self.tab, self.note, *controls, *self.pending.values()]
        unet_inputs, unet_outputs = unet_report
        self.unet_outputs = [*unet_inputs[1 : 1 + CONTROL_COUNT], *unet_outputs]
        refresh = dict(fn=self.refresh_unet, inputs=[self.tab, *unet_inputs], outputs=self.unet_outputs)
        quiet = dict(api_name=False, show_progress="hidden")

        assert list(LEADERS) == ["sample", "train"], "on_load takes the leaders in this order"
        address = dict(fn=self.query_for, inputs=[self.tab, *controls], outputs=self.query, queue=False)
        demo.load(self.on_load, leader_controls, outputs, **quiet).then(**refresh, **quiet).then(**address, **quiet)
        for chapter, button in zip(lesson.chapters, lesson.buttons, strict=True):
            show = functools.partial(self.show, chapter.view)
            button.click(show, leader_controls, outputs, **quiet).then(**refresh, **quiet).then(**address, **quiet)
        for tab, (_control, event) in leaders.items():
            after = functools.partial(self.followers, tab)
            event.then(after, self.pending[tab], [self.pending[tab], *binding.controls[tab].values()], **quiet)

        gr.on([control.change for control in controls], **address, trigger_mode="always_last", **quiet)
        for tab, page in pages.items():
            page.select(functools.partial(str, tab), None, self.tab, queue=False, **quiet).then(**address, **quiet)
        self.query.change(None, self.query, None, js=REPLACE_URL_JS, **quiet)
        self.copy.click(None, None, self.link, js=COPY_LINK_JS, **quiet)

    def apply(self, query: Mapping[str, str], leaders_now: Sequence[object]) -> tuple:
        """The outputs that open the view `query` asks for: the tab, its controls, the note, the pending values."""
        assert self.binding is not None, "wire() first"
        view = self.binding.parse(query)
        updates, pending = self.binding.updates(view, dict(zip(LEADERS, leaders_now, strict=True)))
        note = view.note()
        tab = gr.Tabs(selected=view.tab)
        return (tab, view.tab, gr.Markdown(note, visible=bool(note)), *updates, *(pending[t] for t in LEADERS))

    def on_load(self, sample_model: str, train_dataset: str, request: gr.Request) -> tuple:
        """Page load: apply the address's query (nothing when it carries no view); the leaders' current values
        come in LEADERS' order (Gradio passes the request by its annotation)."""
        leaders_now = (sample_model, train_dataset)
        query = {key: value for key, value in request.query_params.items() if not key.startswith("__")}
        if not query:
            return tuple(gr.skip() for _ in range(3 + len(self.binding.flat) + len(LEADERS)))
        return self.apply(query, leaders_now)

    def show(self, view: Mapping[str, object], *leaders_now: object) -> tuple:
        """A chapter's "Show me": its view, read like a link (so a chapter cannot ask for what a link cannot)."""
        return self.apply({key: format_value(value) for key, value in view.items()}, leaders_now)

    def followers(self, tab: str, pending: Mapping[str, object] | None) -> tuple:
        """After a leader's callback: the values a view left pending for its tab (then nothing is pending)."""
        return (None, *self.binding.follower_updates(tab, pending))

    def refresh_unet(self, tab: str, preset: str, *rest: object) -> tuple:
        """After a view is applied: on the U-Net tab, the preset's controls and its diagram (the tab's own preset
        event fires only on a user's choice); elsewhere nothing."""
        if tab != "unet":
            return tuple(gr.skip() for _ in self.unet_outputs)
        filled = unet.fill_preset(preset)
        values = rest[:CONTROL_COUNT] if preset == "custom" else filled
        return (*filled, *unet.describe_unet(preset, *values, *rest[CONTROL_COUNT:]))

    def query_for(self, tab: str, *values: object) -> str:
        return self.binding.query(tab, values)
