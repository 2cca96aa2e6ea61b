"""How the app reads in Gradio's light theme and in its dark one (`?__theme=dark`, or the system's choice): its
plots, and the few colours of Gradio's default theme that are too faint for WCAG's 4.5:1 (`THEME_CSS`, added to
the app's CSS).

Gradio's `gr.Plot` draws a plotly figure as it is given: it passes no theme to plotly.js, so a figure styled for
a white page keeps its white card on a dark page, and a figure with dark text on a transparent background loses
its text there. No single grey reads at WCAG's 4.5:1 on both Gradio's white blocks and its dark ones (#27272a), so
the plots follow the theme instead:

- every figure has a transparent paper and plot area (`themed`), so it sits on the block's own colour, with the
  light theme's text colour (plotly_white's #2a3f5f, 10.8:1 on white), grid lines of a half-transparent grey that
  show on both, hover boxes on white (their text is dark on any page) and grey modebar icons;
- in the dark theme `THEME_CSS` (added to the app's CSS) turns the figures' own text, titles, tick labels, legend,
  colour bar and annotations, to Gradio's `--body-text-color` (plotly writes its colours as inline styles, which
  only an `!important` rule overrides), and so does a series drawn in the palette's black, its ink (the Sample
  tab's quality chart draws DPM++ 2M SDE in it: black lines on #27272a);
- a drawing that needs its own white paper (the U-Net diagram: black arrows and captions between coloured boxes)
  keeps it (`on_paper`), and its `gr.Plot` carries the CSS class `PAPER_PLOT`, which the dark rules leave alone.

Gradio's own faint colours (its grey for the one-line explanations under the controls, white on its orange
buttons) are set again for each theme (`_READABLE`, with the measured ratios).

tests/test_accessibility.py measures the contrast of every figure's text and of every text of the page against what
lies behind it, in both themes.
"""

from __future__ import annotations

import plotly.graph_objects as go

TRANSPARENT = "rgba(0,0,0,0)"
TEXT_COLOUR = "#2a3f5f"  # plotly_white's text colour; the dark theme replaces it by Gradio's (THEME_CSS)
GRID_COLOUR = "rgba(128,128,128,0.25)"  # a grey at a quarter: faint on white and on Gradio's dark blocks alike
ZERO_LINE_COLOUR = "rgba(128,128,128,0.5)"
MODEBAR_COLOUR = "rgba(128,128,128,0.8)"  # the icons over a plot (3.5:1 on white, 4.2:1 on #27272a)
PAPER = "white"  # the background of a figure drawn on paper (`on_paper`)
PAPER_PLOT = "paper-plot"  # CSS class of a gr.Plot whose figure keeps its white paper in the dark theme

# the text plotly draws for the figure itself: tick labels (in the axis layers), titles, legend, colour bar and
# annotations (in the info layer); not the hover boxes (.hoverlayer), which keep their white background
_FIGURE_TEXT = f".dark .js-plotly-plot:not(.{PAPER_PLOT} *) :is(.xaxislayer-above, .yaxislayer-above, .infolayer) text"
# a series drawn in the palette's black (explorer.figures.PALETTE: ink) as plotly writes it inline: its lines, its
# markers and its legend sample
_INK = ":is(.scatterlayer, .barlayer, .legend) path"
_INK_STROKE = f'.dark .js-plotly-plot:not(.{PAPER_PLOT} *) {_INK}[style*="stroke: rgb(0, 0, 0)"]'
_INK_FILL = f'.dark .js-plotly-plot:not(.{PAPER_PLOT} *) {_INK}[style*="fill: rgb(0, 0, 0)"]'
# Gradio's default theme, in the light theme: its "subdued" grey (the one-line explanation under every control, a
# slider's ends, the captions under pictures) is neutral-400, 1.9:1 on white, and white on its orange buttons and
# its orange selected tab is 2.8:1 (3.6:1 in the dark theme), white on its red Stop button 3.8:1, its links 4.1:1
# on grey (2.8:1 in the dark theme). A custom property that another one names is resolved where it is declared
# (Gradio's :root and :root .dark), so the ones the page uses are set again here, on the body, for each theme.
_READABLE = """
:root body:not(.dark) {
  --body-text-color-subdued: var(--neutral-600); --block-info-text-color: var(--neutral-600);
  --button-primary-background-fill: var(--primary-700); --button-primary-background-fill-hover: var(--primary-800);
  --button-primary-border-color: var(--primary-700); --button-primary-border-color-hover: var(--primary-800);
  --button-cancel-background-fill: #dc2626; --button-cancel-background-fill-hover: #b91c1c;
  --button-cancel-border-color: #dc2626; --button-cancel-border-color-hover: #b91c1c;
  --color-accent: var(--primary-700); --link-text-color: var(--secondary-700);
  --link-text-color-hover: var(--secondary-800); --link-text-color-visited: var(--secondary-800);
}
:root body.dark {
  --button-primary-background-fill: var(--primary-700); --button-primary-background-fill-hover: var(--primary-800);
  --button-primary-border-color: var(--primary-700); --button-primary-border-color-hover: var(--primary-800);
  --link-text-color: var(--secondary-300); --link-text-color-hover: var(--secondary-200);
  --link-text-color-visited: var(--secondary-300);
}
"""
_PLOTS = f"""
/* plots follow Gradio's dark theme (explorer/theme.py) */
{_FIGURE_TEXT} {{fill: var(--body-text-color) !important}}
{_INK_STROKE} {{stroke: var(--body-text-color) !important}}
{_INK_FILL} {{fill: var(--body-text-color) !important}}
"""
THEME_CSS = _READABLE + _PLOTS


def themed(fig: go.Figure) -> go.Figure:
    """Give `fig` the colours that read in both themes: transparent backgrounds, the light theme's text colour (the
    dark theme's CSS replaces it), half-transparent grey grid lines, white hover boxes and grey modebar icons."""
    fig.update_layout(
        paper_bgcolor=TRANSPARENT,
        plot_bgcolor=TRANSPARENT,
        font_color=TEXT_COLOUR,
        hoverlabel={"bgcolor": "white"},
        modebar={"bgcolor": TRANSPARENT, "color": MODEBAR_COLOUR, "activecolor": TEXT_COLOUR},
    )
    axes = {"gridcolor": GRID_COLOUR, "zerolinecolor": ZERO_LINE_COLOUR, "linecolor": GRID_COLOUR}
    fig.update_xaxes(**axes)
    fig.update_yaxes(**axes)
    return fig


def on_paper(fig: go.Figure) -> go.Figure:
    """Draw `fig` on white paper in both themes (a diagram whose dark ink sits on the page around its boxes); its
    gr.Plot needs `elem_classes=[PAPER_PLOT]`, so that the dark theme leaves its text dark."""
    fig.update_layout(paper_bgcolor=PAPER, plot_bgcolor=PAPER)
    return fig
