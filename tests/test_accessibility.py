"""Accessibility on the real page, in headless Chromium (issue 18, part 8).

- Contrast: in Gradio's dark theme (`?__theme=dark`) and in its light one, on every tab found on the page, the text
  of every plotly figure (tick labels, titles, axis titles, legend, colour bar, annotations) has a WCAG contrast ratio
  of at least 4.5:1 against what lies behind it: the first opaque background among its ancestors, with the figure's
  paper (plotly paints it on the first of its stacked SVGs) and any half-transparent layers composed over it; so
  does every other text on the page (the one-line explanations under the controls, buttons, the selected tab,
  links), and every plotted line and marker stands out from its background (at least 2:1). In the dark theme the
  same again after a Train tab Step and a Sample run (the loss plot, the visited-timesteps plot, their pictures). A
  screenshot of each in the dark theme goes to tests/artifacts/dark_<tab>.png.
- Keyboard: on each tab, chosen from the tab bar with Enter, pressing Tab from the tab bar reaches every visible
  control of the tab (buttons, fields, sliders, menus, checkboxes, one radio of each group, file drops, accordions,
  the plots' tool buttons); ticking a schedule with Space redraws the Schedules tab's plot, the Forward process tab's
  t slider moved with the arrow keys changes its picture, and the Sample tab's Sample button pressed with Enter
  samples.
- Alt text: every visible picture of every tab, the Sample tab's after that run included, has an alt text that
  says what it shows (not empty, not a bare "image" or a file name).
"""

from __future__ import annotations

import re
import time

import pytest

WCAG_AA = 4.5  # normal-size text (WCAG 2.x, success criterion 1.4.3)
# a plotted line or marker must not melt into its background. WCAG asks 3:1 of graphics (1.4.11), which the
# colour-blind-safe Okabe-Ito palette misses with its blue on Gradio's dark blocks (2.9), its orange on white (2.2)
# and its yellow on white (1.3; the app keeps it for a seventh series): the palette stays, each series is named in
# the legend and on hover, and a series drawn in black on a dark block (1.4) fails
VISIBLE = 2.0
PLOT_TEXT = (
    ".xtick text, .ytick text, .gtitle, .g-xtitle text, .g-ytitle text, .legendtext, .cbaxis text, .cbtitle text, "
    ".annotation-text"
)
LINES = ".scatterlayer .trace path.js-line"
MARKERS = ".scatterlayer .trace path.point"
THEMES = ("dark", "light")

# the visible tab's panel (the outermost .tabitem shown; a tab may hold tabs of its own)
PANEL_JS = """() => [...document.querySelectorAll('.tabitem')]
    .find(p => p.getClientRects().length && !p.parentElement.closest('.tabitem'))"""

# colours as the browser paints them: rgba() parsed, layers composed, WCAG's contrast ratio, and what lies behind an
# element: its ancestors' backgrounds down to the first opaque one, with a plotly figure's paper (its first
# .main-svg's background, painted under the SVGs stacked over it, which hold the titles and legend)
COLOURS_JS = """
    const rgba = css => {
        const m = css && css.match(/rgba?\\(([^)]*)\\)/);
        if (!m) return [0, 0, 0, 0];  // 'none', 'transparent'
        const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
    const channel = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    const luminance = c => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
    const ratio = (a, b) => {
        const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
        return (hi + 0.05) / (lo + 0.05);
    };
    const behind = el => {
        const layers = [];
        for (let e = el; e; e = e.parentElement) {
            layers.push(rgba(getComputedStyle(e).backgroundColor));
            if (e.classList.contains('svg-container')) {
                const paper = e.querySelector('svg.main-svg');
                if (paper && !paper.contains(el)) layers.push(rgba(getComputedStyle(paper).backgroundColor));
            }
            if (layers[layers.length - 1][3] === 1) break;
        }
        return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);  // the canvas: white
    };
    const seen = (colour, alpha, background) => over([colour[0], colour[1], colour[2], colour[3] * alpha], background);
    const rgb = c => c.slice(0, 3).map(Math.round).join(',');
"""
# every element of the visible tab's plots that matches `selector`: the colour it is painted in (its computed `paint`
# property, fill or stroke, with its opacity) against the colour behind it
CONTRAST_JS = """({selector, paint}) => {
    const panel = (__PANEL__)();
    __COLOURS__
    const drawn = e => e.getClientRects().length && (e.tagName !== 'text' || e.textContent.trim());
    return [...panel.querySelectorAll('.js-plotly-plot')].filter(p => p.getClientRects().length).flatMap(plot =>
        [...plot.querySelectorAll(selector)].filter(drawn).map(e => {
            const style = getComputedStyle(e);
            const background = behind(e);
            const alpha = Number(style[paint + 'Opacity']) * Number(style.opacity);
            const colour = seen(rgba(style[paint]), alpha, background);
            return {plot: plot.closest('.block').querySelector('[data-testid=block-label]')?.innerText || '?',
                    text: (e.textContent.trim() || e.closest('.trace, .traces')?.textContent || '').slice(0, 30),
                    ratio: ratio(colour, background), colour: rgb(colour), background: rgb(background)};
        }));
}""".replace("__PANEL__", PANEL_JS).replace("__COLOURS__", COLOURS_JS)
# every visible text of the page outside the plots (the header, the tab bar, the visible tab, the footer) against
# the colour behind it; text of a disabled control is left out (WCAG 1.4.3 exempts inactive controls)
PAGE_TEXT_JS = """() => {
    __COLOURS__
    const found = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const e = node.parentElement;
        const shown = node.textContent.trim() && e.getClientRects().length;
        if (!shown || e.closest('svg, :disabled, [aria-disabled=true]')) continue;
        const style = getComputedStyle(e);
        if (style.visibility === 'hidden') continue;
        const background = behind(e);
        const colour = seen(rgba(style.color), Number(style.opacity), background);
        found.push({text: node.textContent.trim().slice(0, 40), ratio: ratio(colour, background), colour: rgb(colour),
                    background: rgb(background), size: style.fontSize});
    }
    return found;
}""".replace("__COLOURS__", COLOURS_JS)
# how many plots and traces the visible tab shows, or null while a plot is still drawing (Gradio renders a tab's
# components when it is first shown, and a callback may redraw a plot; a gr.Plot without a figure shows an empty
# box, not a plotly div)
PLOTS_DRAWN_JS = """() => {
    const panel = (__PANEL__)();
    if (!panel) return null;
    const plots = [...panel.querySelectorAll('[data-testid=plotly]')].filter(p => p.getClientRects().length);
    if (!plots.every(p => p.querySelector('.main-svg .xtick, .main-svg .gtitle'))) return null;
    return `${plots.length} plots, ${panel.querySelectorAll('[data-testid=plotly] .trace').length} traces`;
}""".replace("__PANEL__", PANEL_JS)

MARK_FOCUS_JS = """() => document.addEventListener('focusin', e => e.target.setAttribute('data-reached', ''), true)"""
CLEAR_MARKS_JS = """() => document.querySelectorAll('[data-reached]').forEach(e => e.removeAttribute('data-reached'))"""
# where the focus is: the tab bar, the visible tab's panel, elsewhere (the footer), or nowhere
FOCUS_REGION_JS = """() => { const a = document.activeElement;
    if (!a || a === document.body) return 'none';
    if (a.closest('[role=tablist]')) return 'tabs';
    return a.closest('.tabitem') ? 'panel' : 'other'; }"""
# the visible tab's controls that a mouse can use, each with whether the keyboard reached it. A radio counts as
# reached when its group was (Tab stops at one radio of a group, the arrow keys move between them). Left out: what
# a composite widget takes out of the Tab order on purpose (tabindex -1 inside Gradio's table, whose cells the arrow
# keys move between, or inside a listbox, menu or toolbar)
CONTROLS_JS = """() => {
    const panel = (__PANEL__)();
    const selector = 'button, input, select, textarea, a[href], [role=button], [role=slider], [role=combobox], '
        + '[role=checkbox], [role=radio], [role=switch], [role=tab], [contenteditable=true], [tabindex]';
    const shown = e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden'
        && !e.closest('[aria-hidden=true], [inert]');
    const composite = e => e.getAttribute('tabindex') === '-1'
        && e.closest('table, [role=grid], [role=listbox], [role=menu], [role=toolbar]');
    const controls = [...panel.querySelectorAll(selector)]
        .filter(e => shown(e) && !e.disabled && e.type !== 'hidden' && !composite(e));
    const groupReached = name => panel.querySelector(`input[type=radio][name="${name}"][data-reached]`);
    // its accessible name, roughly as a screen reader finds it: aria-label(ledby), its <label>, its text, the name
    // of an icon button or the alt text of a picture inside it (Gradio shows a picture in a button), its title or
    // placeholder (a radio or checkbox is named by its label alone)
    const labelled = e => (e.getAttribute('aria-labelledby') || '').split(' ')
        .map(id => document.getElementById(id)?.innerText || '').join(' ');
    const name = e => (e.getAttribute('aria-label') || labelled(e) || (e.labels && e.labels[0]?.innerText)
        || (['radio', 'checkbox'].includes(e.type) ? '' : e.innerText || e.value)
        || e.querySelector('[aria-label]')?.getAttribute('aria-label') || e.querySelector('img')?.alt || e.title
        || e.placeholder || '')
        .trim().slice(0, 40);
    const block = e => e.closest('.block')?.querySelector('[data-testid=block-label], label span')?.innerText || '';
    return controls.map(e => ({
        what: `${e.tagName.toLowerCase()}[${e.type || e.getAttribute('role') || ''}] "${name(e)}" in "${block(e)}"`,
        reached: e.hasAttribute('data-reached') || (e.type === 'radio' && !!groupReached(e.name)),
        named: !!name(e),
    }));
}""".replace("__PANEL__", PANEL_JS)
# the visible tab's pictures: each one's alt text and the label of the block that shows it
PICTURES_JS = """() => [...(__PANEL__)().querySelectorAll('img')].filter(i => i.getClientRects().length).map(i => ({
    alt: i.alt, label: i.closest('.block')?.querySelector('[data-testid=block-label]')?.innerText || ''}))""".replace(
    "__PANEL__", PANEL_JS
)
TAB_BATCH = 8  # Tab presses between looks at the focus: fewer than the footer, header and tab bar hold together
GENERIC_ALTS = {"image", "picture", "img", "photo", "figure", "gallery", "thumbnail", "output", "preview"}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@pytest.fixture(scope="module")
def themed_page(request, browser, app_url):
    """(theme, page): the app opened once per theme (Gradio reads ?__theme=; tests choose it by parametrizing this
    fixture indirectly), its first tab shown."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{app_url}?__theme={request.param}")
    page.get_by_role("tab").first.wait_for()
    try:
        yield request.param, page
    finally:
        context.close()


def tab_names(page) -> list[str]:
    names = [tab.inner_text().strip() for tab in page.get_by_role("tab").all()]
    assert len(names) >= 7 and "Schedules" in names and "Sample" in names, names
    return names


def wait_for_plots(page, settle_s: float = 0.5, timeout_s: float = 30) -> None:
    """Wait until the visible tab's plots have all drawn and their number and traces have held for settle_s."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        drawn = page.evaluate(PLOTS_DRAWN_JS)
        if drawn != last:
            last, since = drawn, time.monotonic()
        elif drawn is not None and time.monotonic() - since >= settle_s:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the tab's plots did not settle within {timeout_s} s (last: {last})")


def show_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    wait_for_plots(page)


def whole_page_screenshot(page, path) -> None:
    """A screenshot of the whole page, taken in a window as tall as the page: Playwright's full_page grows the window
    while it shoots, and plotly (responsive in Gradio) redraws its figures on the resize, so they come out empty."""
    viewport = page.viewport_size
    page.set_viewport_size({"width": viewport["width"], "height": page.evaluate("document.body.scrollHeight")})
    wait_for_plots(page)
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)


def contrast(first: dict) -> float:
    return first["ratio"]


def measure(page, selector: str, paint: str, tab: str) -> list[dict]:
    return [{**m, "tab": tab} for m in page.evaluate(CONTRAST_JS, {"selector": selector, "paint": paint})]


@pytest.mark.parametrize("themed_page", THEMES, indirect=True)
def test_text_and_plots_read_in_both_themes(themed_page, artifacts):
    theme, page = themed_page
    assert page.evaluate("() => document.body.classList.contains('dark')") == (theme == "dark")
    measured, marks, page_texts, plots_seen = [], [], [], set()

    def look(name: str) -> None:
        nonlocal plots_seen
        page_texts.extend({**text, "tab": name} for text in page.evaluate(PAGE_TEXT_JS))
        texts = measure(page, PLOT_TEXT, "fill", name)
        measured.extend(texts)
        marks.extend(measure(page, LINES, "stroke", name) + measure(page, MARKERS, "fill", name))
        plots_seen |= {(name, text["plot"]) for text in texts}
        if theme == "dark":
            whole_page_screenshot(page, artifacts / f"dark_{slug(name)}.png")

    for name in tab_names(page):
        show_tab(page, name)
        look(name)
    # every tab with a plot on show at the start: Schedules (4), Forward process (1), Time embedding (3), U-Net (1),
    # Sample (the quality chart)
    assert len(plots_seen) >= 10, plots_seen
    if theme == "dark":  # the plots and pictures a run puts on show (the light page is kept fresh for the others)
        show_tab(page, "Train")
        page.locator("#train-step").click()
        page.locator("#train-step-picture img").wait_for(timeout=60_000)
        page.locator("#train-loss .js-plotly-plot .xtick").first.wait_for(timeout=60_000)
        wait_for_plots(page)
        look("Train after a step")
        show_tab(page, "Sample")
        page.locator("#sample-run").click()
        page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
        wait_for_plots(page)
        look("Sample after a run")
        assert {"Train after a step", "Sample after a run"} <= {tab for tab, _ in plots_seen}, plots_seen
    worst, faintest = sorted(measured, key=contrast)[:5], sorted(marks, key=contrast)[:5]
    worst_page = sorted(page_texts, key=contrast)[:5]
    print(
        f"{theme}: {len(measured)} texts in {len(plots_seen)} plots, contrast from {worst[0]['ratio']:.2f}; "
        f"{len(marks)} lines and markers, from {faintest[0]['ratio']:.2f}; "
        f"{len(page_texts)} texts of the page, from {worst_page[0]['ratio']:.2f}"
    )
    assert all(text["ratio"] >= WCAG_AA for text in measured), worst
    assert len(page_texts) >= 500 and all(text["ratio"] >= WCAG_AA for text in page_texts), worst_page
    assert len(marks) >= 20 and all(mark["ratio"] >= VISIBLE for mark in marks), faintest


def press_tab_until(page, predicate_js: str, limit: int = 300) -> bool:
    """Press Tab until the focused element satisfies predicate_js (a function of it) or `limit` presses."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => ({predicate_js})(document.activeElement)"):
            return True
    return False


def choose_tab_by_keyboard(page, index: int) -> None:
    """From the tab bar's first tab, Tab along the bar to the index-th tab and choose it with Enter."""
    page.get_by_role("tab").first.focus()
    for _ in range(index):
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "i => document.querySelectorAll('[role=tab]')[i].getAttribute('aria-selected') === 'true'", arg=index
    )


def tab_through(page, name: str) -> list[dict]:
    """Tab from tab `name`'s button through its panel until the focus leaves it (for the footer); the panel's
    controls, each with whether the focus reached it (MARK_FOCUS_JS must have run on the page)."""
    page.evaluate(CLEAR_MARKS_JS)
    page.get_by_role("tab", name=name, exact=True).focus()
    for _ in range(100):
        for _ in range(TAB_BATCH):
            page.keyboard.press("Tab")
        if page.evaluate(FOCUS_REGION_JS) in ("other", "none"):
            break
    return page.evaluate(CONTROLS_JS)


@pytest.mark.parametrize("themed_page", ["light"], indirect=True)
def test_every_control_is_reached_by_keyboard(themed_page):
    _, page = themed_page  # the keyboard does not depend on the theme: checked once, in the light one
    page.evaluate(MARK_FOCUS_JS)
    missed, unnamed, counts = {}, {}, {}
    for index, name in enumerate(tab_names(page)):
        choose_tab_by_keyboard(page, index)
        wait_for_plots(page)
        controls = tab_through(page, name)
        counts[name] = len(controls)
        missed[name] = [c["what"] for c in controls if not c["reached"]]
        unnamed[name] = [c["what"] for c in controls if not c["named"]]
    print("controls per tab:", counts)
    assert all(count >= 3 for count in counts.values()), counts
    assert not any(missed.values()), {name: what for name, what in missed.items() if what}
    assert not any(unnamed.values()), {name: what for name, what in unnamed.items() if what}


@pytest.mark.parametrize("themed_page", ["light"], indirect=True)
def test_a_2d_data_set_is_drawn_by_keyboard(themed_page):
    """The Train tab's drawing canvas takes clicks; its keyboard way in is the typed-points box: choose the data set
    in the Dataset menu with the keyboard, type two points, add them with Enter on the button; every control of the
    drawing is reached, and the canvas says what it shows."""
    _, page = themed_page
    page.evaluate(MARK_FOCUS_JS)
    choose_tab_by_keyboard(page, tab_names(page).index("Train"))
    assert press_tab_until(
        page, "e => e.getAttribute('role') === 'combobox' && e.getAttribute('aria-label') === 'Dataset'"
    )
    page.keyboard.type("my drawing")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.locator("#train-drawing-text").wait_for(state="visible", timeout=30_000)
    controls = tab_through(page, "Train")
    assert not [c["what"] for c in controls if not c["reached"]]
    assert press_tab_until(page, "e => !!e.closest('#train-drawing-text')")
    page.keyboard.type("0.5, 0.5")
    page.keyboard.press("Enter")
    page.keyboard.type("-0.5, -0.5")
    assert press_tab_until(page, "e => e.id === 'train-drawing-add'", limit=5)
    page.keyboard.press("Enter")
    page.locator("#train-drawing-count").get_by_text("from 2 clicks or typed lines").wait_for(timeout=30_000)
    alt = page.locator("#train-drawing-canvas img").get_attribute("alt")
    assert alt and "drawing" in alt.lower()


@pytest.mark.parametrize("themed_page", ["light"], indirect=True)
def test_keyboard_alone_uses_the_app(themed_page):
    _, page = themed_page
    names = tab_names(page)

    # Schedules: tick "sigmoid" with Space, and the alpha-bar plot draws it
    choose_tab_by_keyboard(page, names.index("Schedules"))
    sigmoid = "e => e.type === 'checkbox' && e.closest('label')?.innerText.trim() === 'sigmoid'"
    assert press_tab_until(page, sigmoid)
    page.keyboard.press("Space")
    legend = "() => [...document.querySelectorAll('.tabitem .legendtext')].some(t => t.textContent === 'sigmoid')"
    page.wait_for_function(legend, timeout=30_000)

    # Forward process: the t slider moved with the arrow keys changes x_t
    choose_tab_by_keyboard(page, names.index("Forward process"))
    x_t = "() => [...document.querySelectorAll('.tabitem img')].find(i => i.alt.startsWith('x_t: the picture'))?.src"
    before = page.evaluate(x_t)
    slider = "e => e.type === 'range' && (e.getAttribute('aria-label') || '').includes('Timestep t')"
    assert before and press_tab_until(page, slider)
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.value") == "255"
    page.wait_for_function(f"before => ({x_t})() !== before", arg=before, timeout=30_000)

    # Sample: the Sample button pressed with Enter samples
    choose_tab_by_keyboard(page, names.index("Sample"))
    assert press_tab_until(page, "e => e.id === 'sample-run'")
    page.keyboard.press("Enter")
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    assert page.locator("#sample-progress [role=progressbar]").get_attribute("aria-valuenow") != "0"


@pytest.mark.parametrize("themed_page", ["light"], indirect=True)
def test_pictures_say_what_they_show(themed_page):
    _, page = themed_page
    pictures = {}
    for name in tab_names(page):
        show_tab(page, name)
        if name == "Sample" and not page.locator("#sample-xt img").count():  # a run puts its pictures on show
            page.locator("#sample-run").click()
            page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
        pictures[name] = page.evaluate(PICTURES_JS)
    assert len(pictures["Forward process"]) >= 13 and len(pictures["Sample"]) >= 3, pictures
    bad = [
        (name, p)
        for name, shown in pictures.items()
        for p in shown
        if len(p["alt"].strip()) < 5
        or p["alt"].strip().lower() in GENERIC_ALTS
        or re.search(r"\.(png|jpe?g|webp|gif)$", p["alt"].strip().lower())
    ]
    assert not bad, bad
