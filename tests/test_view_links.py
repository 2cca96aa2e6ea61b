"""Shareable views (explorer/url_state.py, explorer/view_links.py) and the Lesson tab's "Show me" buttons.

A link opens exactly its view; bad or unknown values open the defaults with a note that names them, never an error;
the address bar follows what the user does and "Copy link to this view" gives it; every chapter's view is a valid
link. The parsing is tested on the app's real controls (bound from a built app), the page in Chromium.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl

import gradio as gr
import pytest

from explorer.app import build_app
from explorer.tabs.lesson import CHAPTERS
from explorer.url_state import DEFAULT_TAB, format_value

LOADED = "See every part of a denoising diffusion model move"


@pytest.fixture(scope="module")
def binding():
    return build_app().link_bar.binding


def parse(binding, link: str):
    return binding.parse(dict(parse_qsl(link.lstrip("?"))))


def test_a_link_names_a_tab_and_its_settings(binding):
    view = parse(binding, "?tab=forward&t=500&schedule=cosine")
    assert (view.tab, view.values, view.problems) == ("forward", {"schedule": "cosine", "t": 500}, [])


@pytest.mark.parametrize(
    ("link", "named"),
    [
        ("?tab=forward&t=abc", "t='abc' is not a number"),
        ("?tab=forward&t=5000", "t='5000' is outside 0 to 999"),
        ("?tab=forward&t=500.5", "t='500.5' must be a whole number"),
        ("?tab=forward&t=nan", "t='nan' is not a finite number"),
        ("?tab=forward&schedule=quadratic", "schedule='quadratic' is not one of: linear, cosine"),
        ("?tab=forward&match=maybe", "match='maybe' is not true or false"),
        ("?tab=forward&colour=red", "'colour' is not a setting of the forward tab"),
        ("?tab=nowhere", "tab='nowhere' is not a tab"),
        ("?tab=train&lr=-1", "lr='-1' is outside 0 to 0.1"),
        ("?tab=sample&class=3", "class='3' is not one of: none (unconditional)"),
        ("?tab=sample&model=Digits+by+class+(pretrained)&class=12", "class='12' is not one of"),
        ("?tab=sample&images=100", "images='100' is more than this model's 64"),
        ("?tab=sample&model=my+run+1", "model='my run 1' is not one of"),
        ("?tab=schedules&schedules=linear,quadratic", "schedules='linear,quadratic' is not one of"),
        ("?tab=forward&t=" + "9" * 300, "is longer than 200 characters"),
    ],
)
def test_a_bad_value_is_named_in_the_note_and_left_at_its_default(binding, link, named):
    view = parse(binding, link)
    assert named in view.note(), view.note()
    assert view.note().startswith("This link had settings the app cannot use")
    key = link.split("&")[-1].split("=")[0].lstrip("?")
    assert key not in view.values  # the default stays
    if key == "tab":
        assert view.tab == DEFAULT_TAB


def test_good_values_survive_beside_bad_ones(binding):
    view = parse(binding, "?tab=forward&t=700&schedule=nope&seed=3")
    assert view.values == {"t": 700, "seed": 3}
    assert len(view.problems) == 1


def test_gradios_own_keys_are_left_to_gradio(binding):
    view = parse(binding, "?__theme=dark&tab=schedules&log=false")
    assert view.values == {"log": False} and view.problems == []


def test_a_choice_can_be_named_by_its_start_or_in_any_case(binding):
    assert parse(binding, "?tab=train&dataset=mnist").values["dataset"].startswith("MNIST (60,000")
    assert parse(binding, "?tab=forward&schedule=COSINE").values["schedule"] == "cosine"
    assert parse(binding, "?tab=train&dataset=2D").problems  # five 2D sets start so: ambiguous


def test_the_class_menu_follows_the_links_model(binding):
    view = parse(binding, "?tab=sample&model=Digits+by+class+(pretrained)&class=3&guidance=4")
    assert view.values == {"model": "Digits by class (pretrained)", "class": "3", "guidance": 4}
    assert view.problems == []


@pytest.mark.parametrize("tab", ["schedules", "forward", "embedding", "unet", "train", "sample"])
def test_a_query_reads_back_as_the_same_view(binding, tab):
    """Change every control of the tab to another allowed value, build the query, read it back."""
    values, changed = [], {}
    for t, key, control in binding.flat:
        value = control.value
        if t == tab:
            value = other_value(control, key)
            changed[key] = value
        values.append(value)
    view = parse(binding, binding.query(tab, values))
    assert view.problems == [] and view.tab == tab
    assert view.values == {key: value for key, value in changed.items() if value is not None}


def other_value(control, key):
    if key == "class":
        return "3"  # a class of the other model, "Digits by class" (its menu follows the model)
    if isinstance(control, gr.Checkbox):
        return not control.value
    if isinstance(control, gr.CheckboxGroup):
        return [value for _label, value in control.choices][-2:]
    if isinstance(control, gr.Dropdown | gr.Radio):
        return next(value for _label, value in control.choices if value != control.value)
    if key == "images":
        return 9
    if isinstance(control, gr.Slider | gr.Number):
        low = control.minimum if control.minimum is not None else 0
        value = (low + control.maximum) / 2 if control.maximum is not None else low + 1
        value = int(value) if isinstance(control.value, int) else value
        return value if value != control.value else value + 1
    raise AssertionError(control)


def test_a_query_holds_only_what_differs_from_the_defaults(binding):
    values = [control.value for _t, _key, control in binding.flat]
    assert binding.query("forward", values) == "tab=forward"
    index = [key for t, key, _c in binding.flat if t == "forward"].index("t")
    first = [t for t, _k, _c in binding.flat].index("forward")
    values[first + index] = 640
    assert binding.query("forward", values) == "tab=forward&t=640"


def test_a_view_changing_a_leader_keeps_the_rest_for_after_its_callback(binding):
    view = parse(binding, "?tab=sample&model=Digits+by+class+(pretrained)&class=3&steps=20")
    updates, pending = binding.updates(view, {"sample": "Digits (pretrained)", "train": None})
    sample = {key: value for (t, key, _c), value in zip(binding.flat, updates, strict=True) if t == "sample"}
    assert sample["model"] == "Digits by class (pretrained)"
    assert all(value == gr.update() for key, value in sample.items() if key != "model")
    assert pending["sample"] == {"class": "3", "steps": 20} and pending["train"] is None
    # the same model already chosen: everything at once, nothing pending
    updates, pending = binding.updates(view, {"sample": "Digits by class (pretrained)", "train": None})
    assert pending == {"sample": None, "train": None}


def test_a_view_without_its_leader_resets_it_to_the_default(binding):
    """A Train view that names no dataset, opened while the user trains on moons: the dataset goes back to the
    default, and the rest follows after the dataset's own callback."""
    view = parse(binding, "?tab=train&length=30")
    updates, pending = binding.updates(view, {"sample": None, "train": "2D: two moons"})
    train = {key: value for (t, key, _c), value in zip(binding.flat, updates, strict=True) if t == "train"}
    assert train["dataset"] == binding.defaults["train"]["dataset"]
    expected = {key: value for key, value in binding.defaults["train"].items() if key != "dataset"}
    assert pending["train"] == {**expected, "length": 30}


def test_a_view_is_the_whole_tab_the_rest_at_its_defaults(binding):
    view = parse(binding, "?tab=forward&t=10")
    updates, _pending = binding.updates(view, {"sample": None, "train": None})
    forward = {key: value for (t, key, _c), value in zip(binding.flat, updates, strict=True) if t == "forward"}
    assert forward == {**binding.defaults["forward"], "t": 10}
    others = [value for (t, _key, _c), value in zip(binding.flat, updates, strict=True) if t != "forward"]
    assert all(value == gr.update() for value in others)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda chapter: chapter.title)
def test_every_chapter_is_a_valid_link(binding, chapter):
    view = parse(binding, chapter.link())
    assert view.problems == []
    assert view.tab == chapter.view["tab"]
    assert {key: format_value(value) for key, value in view.values.items()} == {
        key: format_value(value) for key, value in chapter.view.items() if key != "tab"
    }


def test_the_lesson_has_seven_short_chapters_each_with_a_question():
    assert len(CHAPTERS) == 7
    for chapter in CHAPTERS:
        sentences = len(re.findall(r"[.!?](\s|$)", chapter.text))
        assert 2 <= sentences <= 4, chapter.title
        assert chapter.question.endswith("?")


# --- in Chromium ---


def value_of(page, label: str) -> str:
    return page.locator(f"input[aria-label='{label}']").first.input_value()


def address(page) -> str:
    return page.evaluate("location.search")


def wait_for(condition, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_a_link_opens_its_view_in_chromium(app_url, page, artifacts):
    page.goto(app_url + "?tab=forward&t=500&schedule=cosine&__theme=light")
    page.get_by_text(LOADED).wait_for(timeout=30_000)
    wait_for(lambda: value_of(page, "number input for Timestep t") == "500")
    assert page.locator("[role=tab][aria-selected=true]").inner_text() == "Forward process"
    assert value_of(page, "Schedule") == "cosine"
    assert page.locator("#view-note").is_hidden()
    wait_for(lambda: address(page) == "?tab=forward&schedule=cosine&t=500&__theme=light")  # canonical, kept
    page.screenshot(path=str(artifacts / "view_link_forward.png"))


def test_a_bad_link_opens_the_defaults_with_a_note(app_url, page, artifacts):
    page.goto(app_url + "?tab=forward&t=5000&schedule=quadratic&seed=7")
    page.get_by_text(LOADED).wait_for(timeout=30_000)
    note = page.locator("#view-note")
    note.wait_for(timeout=20_000)
    assert "t='5000' is outside 0 to 999" in note.inner_text()
    assert "schedule='quadratic'" in note.inner_text()
    assert value_of(page, "number input for Timestep t") == "250"  # the default
    assert value_of(page, "Schedule") == "linear"
    wait_for(lambda: value_of(page, "Noise seed") == "7")  # the good value is kept
    assert page.locator(".toast-body").count() == 0  # no error
    page.screenshot(path=str(artifacts / "view_link_bad.png"))


def test_the_address_follows_the_page_and_copy_link_gives_it(app_url, page):
    page.goto(app_url)
    page.get_by_text(LOADED).wait_for(timeout=30_000)
    page.get_by_role("tab", name="Forward process").click()
    wait_for(lambda: address(page) == "?tab=forward")
    slider = page.locator("input[aria-label='number input for Timestep t']")
    slider.fill("640")
    slider.press("Enter")
    wait_for(lambda: address(page) == "?tab=forward&t=640")
    page.locator("#copy-view-link").click()
    link = page.locator("#view-link textarea, #view-link input").first
    wait_for(lambda: link.input_value().endswith("?tab=forward&t=640"))
    assert link.input_value() == app_url.rstrip("/") + "/?tab=forward&t=640"


def test_show_me_opens_a_chapter_that_changes_the_model(app_url, page, artifacts):
    """The guidance chapter changes the Sample model: its class and guidance must survive the model's own
    settings, which its change applies after."""
    page.goto(app_url)
    page.get_by_text(LOADED).wait_for(timeout=30_000)
    assert page.locator("[role=tab][aria-selected=true]").inner_text() == "Lesson"
    page.locator("#lesson-show-7").click()
    wait_for(lambda: value_of(page, "Class") == "3")
    assert page.locator("[role=tab][aria-selected=true]").inner_text() == "Sample"
    assert value_of(page, "Model") == "Digits by class (pretrained)"
    wait_for(lambda: value_of(page, "number input for Guidance scale") == "4")
    wait_for(lambda: "class=3" in address(page) and "tab=sample" in address(page))
    page.screenshot(path=str(artifacts / "lesson_show_guidance.png"))
    page.get_by_role("tab", name="Lesson").click()
    page.locator("#lesson-show-4").click()  # the U-Net chapter: the tiny preset, redrawn
    wait_for(lambda: value_of(page, "Preset") == "tiny")
    wait_for(lambda: value_of(page, "number input for Base channels") == "32")
    page.get_by_text("cut into 2x2 patches").first.wait_for(timeout=20_000)  # the diagram redrawn for tiny
    page.screenshot(path=str(artifacts / "lesson_show_unet.png"), full_page=True)
