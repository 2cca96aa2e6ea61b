"""Shareable views: the open tab and its main controls, written to and read from the page's URL query.

A view is a plain mapping such as ``{"tab": "forward", "t": "500", "schedule": "cosine"}``: the tab's id and, for
that tab only, the controls that differ from the page's defaults, under short keys (VIEW_KEYS). The page keeps its
address bar on the current view (every tracked control's change rewrites the query, without a reload), "Copy link
to this view" copies it, and a link opens that view. Reading is strict and forgiving: each value is checked
against its control's own choices or range, and anything unknown or out of range is left at the default with a
note that says which value was ignored and why; a link never opens an error page. The Lesson tab's "Show me"
buttons open their chapters' views with the same code (explorer.tabs.lesson).

Some controls lead others: choosing a Sample model sets the sampler, steps and class menu that model samples best
with, choosing a Train dataset sets its objective, batch and learning rate. A view that changes such a leader
keeps the values that depend on it as pending and applies them after the leader's own callback has run
(`ViewBinding.after`), so that callback cannot overwrite them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import gradio as gr

TAB_KEY = "tab"
# per tab: URL key -> the label of the control it sets (labels are unique within a tab; build_app checks them)
VIEW_KEYS: dict[str, dict[str, str]] = {
    "lesson": {},
    "schedules": {"schedules": "Schedules", "T": "T (number of steps)", "log": "log scale for beta_t"},
    "forward": {
        "picture": "Picture",
        "schedule": "Schedule",
        "t": "Timestep t",
        "seed": "Noise seed",
        "compare": "Compare with",
        "match": "Match the noise level (nearest log-SNR) instead of t",
    },
    "embedding": {"d": "Embedding size d", "T": "T (number of steps)"},
    "unet": {
        "preset": "Preset",
        "size": "Input size (pixels)",
        "channels": "Input channels",
        "objective": "The network is trained to predict",
    },
    "train": {
        "dataset": "Dataset",
        "size": "Model size",
        "schedule": "Noise schedule",
        "objective": "Objective",
        "unit": "Train for",
        "length": "How long",
        "batch": "Batch size",
        "lr": "Learning rate",
        "seed": "Seed",
        "conditional": "Class-conditional (for guidance)",
    },
    "sample": {
        "model": "Model",
        "sampler": "Sampler",
        "spacing": "Timestep spacing",
        "steps": "Steps",
        "eta": "eta (DDIM only)",
        "seed": "Seed",
        "images": "Number of images",
        "class": "Class",
        "guidance": "Guidance scale",
    },
    "experiments": {"experiment": "Ready-made experiment"},
}
DEFAULT_TAB = next(iter(VIEW_KEYS))
# controls whose change resets others of their tab (see the module's docstring): tab -> key
LEADERS = {"sample": "model", "train": "dataset"}
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
MAX_VALUE_LENGTH = 200


class ViewValueError(ValueError):
    """A value of a link that its control cannot take; the message says what it can take."""


def _choice_values(control: gr.components.Component) -> list:
    return [value for _label, value in getattr(control, "choices", None) or []]


def match_choice(raw: str, choices: list) -> object:
    """The choice `raw` names: its exact value, else the one whose text matches ignoring case, else the only one
    that starts with it (so `dataset=mnist` names "MNIST (60,000 digits, ...)")."""
    for choice in choices:
        if str(choice) == raw:
            return choice
    folded = raw.casefold()
    for choice in choices:
        if str(choice).casefold() == folded:
            return choice
    starting = [choice for choice in choices if str(choice).casefold().startswith(folded)]
    if len(starting) == 1 and folded:
        return starting[0]
    shown = ", ".join(str(choice) for choice in choices[:8]) + (", ..." if len(choices) > 8 else "")
    raise ViewValueError(f"is not one of: {shown}")


def _number(raw: str, low: float | None, high: float | None, whole: bool) -> float | int:
    try:
        value = float(raw)
    except ValueError:
        raise ViewValueError("is not a number") from None
    if not math.isfinite(value):
        raise ViewValueError("is not a finite number")
    if whole and value != int(value):
        raise ViewValueError("must be a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ViewValueError(
            f"is outside {low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
        )
    return int(value) if whole else value


def parse_value(control: gr.components.Component, raw: str) -> object:
    """The value `raw` (from a URL) gives `control`, checked against the control's own choices or range; raises
    ViewValueError saying what the control takes."""
    if len(raw) > MAX_VALUE_LENGTH:
        raise ViewValueError(f"is longer than {MAX_VALUE_LENGTH} characters")
    if isinstance(control, gr.Checkbox):
        word = raw.casefold()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ViewValueError("is not true or false")
    if isinstance(control, gr.CheckboxGroup):
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        return [match_choice(part, _choice_values(control)) for part in parts]
    if isinstance(control, gr.Dropdown | gr.Radio):
        return match_choice(raw.strip(), _choice_values(control))
    if isinstance(control, gr.Slider):
        whole = float(control.step).is_integer() and float(control.minimum).is_integer()
        return _number(raw, control.minimum, control.maximum, whole)
    if isinstance(control, gr.Number):
        whole = control.precision == 0 or (isinstance(control.value, int) and not isinstance(control.value, bool))
        return _number(raw, control.minimum, control.maximum, whole)
    raise TypeError(f"a view cannot carry a {type(control).__name__}")


def format_value(value: object) -> str:
    """A control's value as it is written in a URL (parse_value reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(format_value(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class ParsedView:
    """What a link asks for: the tab, the values that passed their checks, and a note on what was ignored."""

    tab: str = DEFAULT_TAB
    values: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def note(self) -> str:
        if not self.problems:
            return ""
        return "This link had settings the app cannot use, so they were left at their defaults: " + "; ".join(
            self.problems
        )


@dataclass
class ViewBinding:
    """The page's tracked controls, by tab and key, with their defaults (their values when the page was built)."""

    controls: dict[str, dict[str, gr.components.Component]]
    # (tab, key) -> parse(raw, the values read so far): for controls whose choices depend on another (the Sample
    # tab's class menu follows its model)
    parsers: dict[tuple[str, str], Callable[[str, dict], object]] = field(default_factory=dict)
    defaults: dict[str, dict[str, object]] = field(init=False)

    def __post_init__(self) -> None:
        self.defaults = {
            tab: {key: control.value for key, control in controls.items()} for tab, controls in self.controls.items()
        }

    @classmethod
    def find(cls, tabs: Mapping[str, gr.Tab], keys: Mapping[str, Mapping[str, str]] = VIEW_KEYS) -> ViewBinding:
        """Bind VIEW_KEYS to the controls inside each tab (`tabs`: tab id -> the gr.Tab), found by label; a label
        that names no control or several raises, so a renamed control breaks the build, not a link."""
        found: dict[str, dict[str, gr.components.Component]] = {}
        for tab, labels in keys.items():
            inside = list(_descendants(tabs[tab]))
            found[tab] = {}
            for key, label in labels.items():
                matches = [block for block in inside if getattr(block, "label", None) == label and _is_control(block)]
                if len(matches) != 1:
                    raise LookupError(f"tab {tab!r}: {len(matches)} controls are labelled {label!r} (need exactly 1)")
                found[tab][key] = matches[0]
        return cls(found)

    @property
    def flat(self) -> list[tuple[str, str, gr.components.Component]]:
        """Every tracked control as (tab, key, control), in one fixed order (the order of events' inputs)."""
        return [(tab, key, control) for tab, controls in self.controls.items() for key, control in controls.items()]

    def components(self) -> list[gr.components.Component]:
        return [control for _tab, _key, control in self.flat]

    def parse(self, query: Mapping[str, str]) -> ParsedView:
        """Read a URL query (Gradio's own `__theme` and other `__` keys are left to Gradio)."""
        view = ParsedView()
        tab = query.get(TAB_KEY, DEFAULT_TAB)
        if tab not in self.controls:
            view.problems.append(f"tab={tab!r} is not a tab (tabs: {', '.join(self.controls)})")
            tab = DEFAULT_TAB
        view.tab = tab
        for key in query:
            if key != TAB_KEY and not key.startswith("__") and key not in self.controls[tab]:
                known = ", ".join(self.controls[tab]) or "none"
                view.problems.append(f"{key!r} is not a setting of the {tab} tab (its settings: {known})")
        for key, control in self.controls[tab].items():  # the tab's order: a leader before what depends on it
            if key not in query:
                continue
            raw = query[key]
            try:
                parse = self.parsers.get((tab, key))
                view.values[key] = parse(raw, view.values) if parse else parse_value(control, raw)
            except ViewValueError as error:
                view.problems.append(f"{key}={raw[:40]!r} {error}")
        return view

    def query(self, tab: str, values: Iterable[object]) -> str:
        """The URL query of the view on `tab` with the tracked controls at `values` (in `flat` order): the tab's
        controls that differ from their defaults, all of its leader's followers when the leader differs."""
        current = dict(zip([(t, key) for t, key, _control in self.flat], values, strict=True))
        tab = tab if tab in self.controls else DEFAULT_TAB
        changed = {key: current[tab, key] for key in self.controls[tab] if current[tab, key] != self.defaults[tab][key]}
        leader = LEADERS.get(tab)
        if leader in changed:
            changed = {key: current[tab, key] for key in self.controls[tab]}
        pairs = [(TAB_KEY, tab)] + [(key, format_value(value)) for key, value in changed.items() if value is not None]
        return urlencode(pairs)

    def updates(self, view: ParsedView, leaders_now: Mapping[str, object]) -> tuple[list, dict[str, dict | None]]:
        """What applying `view` sends to the tracked controls (in `flat` order: a value, or gr.update() for the
        ones it leaves alone), and per leader tab the values to apply after the leader's own callback (None for
        tabs whose leader does not change; `leaders_now` holds each leader's current value). The view's tab gets
        its values and, where its leader ends at the default, the defaults for the rest (a view is the whole tab);
        with another leader value, the rest is what that leader's callback chooses."""
        tab, values = view.tab, dict(view.values)
        leader = LEADERS.get(tab)
        if leader is not None:
            values.setdefault(leader, self.defaults[tab][leader])  # a view without it means its default
        if leader is None or values[leader] == self.defaults[tab][leader]:
            values = {**self.defaults[tab], **values}
        pending: dict[str, dict | None] = dict.fromkeys(LEADERS)
        if leader in values and values[leader] != leaders_now.get(tab):
            pending[tab] = {key: value for key, value in values.items() if key != leader}
            values = {leader: values[leader]}
        out = [values[key] if t == tab and key in values else gr.update() for t, key, _control in self.flat]
        return out, pending

    def follower_updates(self, tab: str, pending: Mapping[str, object] | None) -> list:
        """After the leader of `tab` has set its followers: the pending values for the tab's controls (in the tab's
        order; gr.update() where nothing is pending)."""
        pending = pending or {}
        return [pending.get(key, gr.update()) for key in self.controls[tab]]


def _is_control(block: object) -> bool:
    return isinstance(block, gr.Slider | gr.Dropdown | gr.Radio | gr.Number | gr.Checkbox | gr.CheckboxGroup)


def _descendants(block: gr.blocks.Block) -> Iterable[gr.blocks.Block]:
    for child in getattr(block, "children", []):
        yield child
        yield from _descendants(child)


def link_for(view: Mapping[str, object], base: str = "") -> str:
    """A link to `view` ({"tab": ..., key: value}) under `base` (the app's address; "" gives the query alone)."""
    return f"{base}?{urlencode({key: format_value(value) for key, value in view.items()})}"


# the page side: keep the address bar on the view (no reload, no new history entry), and copy it
REPLACE_URL_JS = """(query) => {
  if (query) {
    const kept = [...new URLSearchParams(location.search)].filter(([key]) => key.startsWith("__"));
    const params = new URLSearchParams(query);
    for (const [key, value] of kept) params.set(key, value);
    history.replaceState(history.state, "", location.pathname + "?" + params.toString() + location.hash);
  }
}"""
COPY_LINK_JS = """() => {
  const link = location.href;
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(link).catch(() => {});
  return link;
}"""
