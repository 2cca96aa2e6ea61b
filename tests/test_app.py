"""The app: it builds, serves, answers through gradio_client, refuses bad input, and renders in Chromium."""

import pytest
from gradio_client import Client

import app
from explorer.app import build_app, schedule_table


def test_app_module_exposes_blocks_without_launching():
    import gradio as gr

    assert isinstance(app.demo, gr.Blocks)
    assert isinstance(build_app(), gr.Blocks)


def test_schedule_table_values_come_from_the_core():
    rows = {row[0]: row for row in schedule_table(1000)}
    assert set(rows) == {"linear", "cosine", "sigmoid", "scaled_linear"}
    assert rows["linear"][-1] == "4.036e-05" and rows["cosine"][-1] == "2.429e-09"


def test_client_gets_the_table_and_bad_t_gets_a_message(app_url):
    client = Client(app_url, verbose=False)
    result = client.predict(200, api_name="/schedule_table")
    rows = {row[0]: row for row in result["data"]}
    expected = {row[0]: row for row in schedule_table(200)}
    assert rows["linear"] == expected["linear"]
    with pytest.raises(Exception, match="less than minimum value 10"):
        client.predict(5, api_name="/schedule_table")


def visible_text(page, text):
    return page.get_by_text(text, exact=True).filter(visible=True).first


def test_page_renders_in_chromium_and_t_updates_the_table(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    assert page.title() == "DDPM Explorer"
    visible_text(page, "4.036e-05").wait_for(timeout=30_000)  # linear alpha-bar at t = 999
    page.screenshot(path=str(artifacts / "app_about.png"), full_page=True)
    expected = dict((row[0], row[-1]) for row in schedule_table(200))["linear"]
    number = page.get_by_label("number input for T, the number of diffusion steps")
    number.fill("200")
    number.press("Enter")
    visible_text(page, expected).wait_for(timeout=30_000)
