"""The U-Net tab: model summaries (parameters, shapes, MACs), level shapes, the U diagram, and the tab's callbacks."""

import re

import gradio as gr
import pytest
import torch
from gradio_client import Client
from torch import nn

from core.summary import LayerRow, level_shapes, measure_forward_time, meta_unet, summarize
from core.unet import PRESETS, UNet, UNetConfig, make_unet
from explorer.tabs import unet as tab
from explorer.unet_diagram import OUTPUT_LABELS, SKIP_NAME, unet_diagram


class OneConv(nn.Module):
    """A denoiser-shaped toy: one 3x3 conv, same signature as the U-Net."""

    def __init__(self, cin: int = 3, cout: int = 8, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x, t, y=None):
        return self.conv(x)


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU())
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x, t, y=None):
        return self.head(self.body(x))


def preset_args(preset, image_size=32, in_channels=1):
    """describe_unet's arguments for a named preset, as the page sends them after choosing it."""
    return (preset, *tab.preset_controls(preset), image_size, in_channels)


def labels(fig):
    return [a.text for a in fig.layout.annotations if a.text]


# core.summary


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_total_parameters_equal_the_models_and_the_rows_add_up(preset):
    torch.manual_seed(0)
    net = make_unet(preset, in_channels=3)
    summary = summarize(net, (2, 3, 32, 32))
    expected = sum(p.numel() for p in net.parameters())
    assert summary.total_parameters == expected
    assert sum(row.parameters for row in summary.rows) == expected  # the blocks cover the whole U-Net
    assert sum(row.macs for row in summary.rows) == summary.macs


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 3, 28, 28), (1, 3, 64, 48)])
def test_last_row_is_the_output_conv_with_the_input_shape(shape):
    net = UNet(UNetConfig(in_channels=shape[1], base_channels=8, channel_mults=(1, 2, 2), time_emb_dim=16))
    summary = summarize(net, shape)
    assert summary.rows[-1].name == "output_conv"
    assert summary.rows[-1].output_shape == shape
    assert summary.output_shape == shape


def test_rows_follow_the_order_the_blocks_run():
    net = UNet(
        UNetConfig(base_channels=8, channel_mults=(1, 2, 4), time_emb_dim=16, attention_levels=(2,), mid_attention=True)
    )
    names = [row.name for row in summarize(net, (1, 1, 16, 16)).rows]
    assert names == [
        "time_embedding", "input_conv",
        "down_levels.0", "downsamples.0", "down_levels.1", "downsamples.1", "down_levels.2",
        "mid_block1", "mid_attention", "mid_block2",
        "up_levels.0", "upsamples.0", "up_levels.1", "upsamples.1", "up_levels.2",
        "output_norm", "output_conv",
    ]  # fmt: skip
    shapes = {row.name: row.output_shape for row in summarize(net, (1, 1, 16, 16)).rows}
    assert shapes["down_levels.2"] == (1, 32, 4, 4) and shapes["upsamples.1"] == (1, 8, 16, 16)


@pytest.mark.parametrize(("cin", "cout", "k", "h", "w"), [(3, 8, 3, 16, 16), (1, 5, 5, 12, 20), (4, 4, 1, 7, 9)])
def test_macs_of_one_conv_equal_the_closed_form(cin, cout, k, h, w):
    summary = summarize(OneConv(cin, cout, k), (1, cin, h, w))
    assert summary.macs == h * w * cin * cout * k * k
    assert summary.rows[0].macs == summary.macs


def test_attention_macs_are_counted():
    plain = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    attended = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), time_emb_dim=16, attention_levels=(0,)))
    extra = summarize(attended, (1, 1, 8, 8)).macs - summarize(plain, (1, 1, 8, 8)).macs
    # per attention layer at level 0 (8 channels, 64 positions, 4 heads of 2): qkv 1x1 conv + proj 1x1 conv + QK^T + AV
    hw, c = 64, 8
    per_layer = hw * c * 3 * c + hw * c * c + 2 * hw * hw * c
    assert extra == 2 * per_layer  # one in the encoder level, one in the decoder level


def test_a_toy_model_falls_back_to_its_leaf_modules():
    summary = summarize(OneConv(), (1, 3, 16, 16))
    assert summary.rows == [LayerRow("conv", "Conv2d", (1, 8, 16, 16), 3 * 8 * 9 + 8, 16 * 16 * 3 * 8 * 9)]
    rows = summarize(TwoLayers(), (1, 1, 8, 8)).rows
    assert [(r.name, r.type, r.output_shape) for r in rows] == [
        ("body.0", "Conv2d", (1, 4, 8, 8)),
        ("body.1", "SiLU", (1, 4, 8, 8)),
        ("head", "Conv2d", (1, 1, 8, 8)),
    ]


def test_meta_device_gives_the_same_summary_without_computing():
    torch.manual_seed(0)
    real = summarize(make_unet("small"), (1, 1, 32, 32))
    meta = summarize(meta_unet(PRESETS["small"]), (1, 1, 32, 32))
    assert meta == real


def test_summarize_restores_training_mode_and_refuses_bad_sizes():
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2, 2), time_emb_dim=16))
    net.train()
    summarize(net, (1, 1, 16, 16))
    assert net.training
    with pytest.raises(ValueError, match=r"input size 30x30 is not divisible by 4.*32x32"):
        summarize(net, (1, 1, 30, 30))
    with pytest.raises(ValueError, match="four positive integers"):
        summarize(net, (1, 16, 16))


def test_measure_forward_time_is_a_short_positive_median():
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    seconds = measure_forward_time(net, (1, 1, 16, 16), repeats=3, warmup=1)
    assert 0 < seconds < 1
    with pytest.raises(ValueError, match="meta device"):
        measure_forward_time(meta_unet(PRESETS["tiny"]), (1, 1, 16, 16))


def test_level_shapes_of_the_seed_preset():
    assert level_shapes(PRESETS["seed"], 32) == [(0, 32, 64), (1, 16, 128), (2, 8, 256)]
    assert level_shapes(make_unet("tiny-3-level").config, 64) == [(0, 64, 16), (1, 32, 32), (2, 16, 32)]
    assert level_shapes(make_unet("tiny").config, 64) == [(0, 32, 32), (1, 16, 64)]  # on 2x2 patches
    assert level_shapes(UNetConfig(base_channels=4, channel_mults=(1, 3)), 28) == [(0, 28, 4), (1, 14, 12)]
    with pytest.raises(ValueError, match=r"input size 30x30 is not divisible by 4 \(2\^\(levels-1\) for 3 levels\)"):
        level_shapes(PRESETS["seed"], 30)


# explorer.unet_diagram


def test_patches_shrink_every_level_and_the_diagram_says_so():
    """With 2x2 patches the first level works at half the input size and the diagram's input and output arrows
    name the cut into patches and the way back to pixels."""
    config = UNetConfig(base_channels=32, channel_mults=(1, 2), patch_size=2)
    assert level_shapes(config, 28) == [(0, 14, 32), (1, 7, 64)]
    texts = labels(unet_diagram(config, 28))
    assert any("cut into 2x2 patches<br>(4 ch), 3x3 conv" in t for t in texts), texts
    assert any("patches back to pixels" in t for t in texts)
    assert any(t.startswith("<b>input</b>") and "28x28 · 1 ch" in t for t in texts)
    assert sum("14x14 · 32 ch" in t for t in texts if t.startswith(("<b>down", "<b>up"))) == 2
    assert not any("patches" in t for t in labels(unet_diagram(PRESETS["seed"], 32)))


def test_the_diagram_labels_the_seed_levels():
    texts = labels(unet_diagram(PRESETS["seed"], 32))
    for label in ("32x32 · 64 ch", "16x16 · 128 ch", "8x8 · 256 ch"):
        # one encoder box and one decoder box per level
        assert sum(label in t for t in texts if t.startswith(("<b>down", "<b>up"))) == 2, label
    assert not any("attention" in t for t in texts if t.startswith("<b>down"))
    assert any("8x8 · 256 ch" in t for t in texts if t.startswith("<b>middle"))


def test_the_diagram_marks_attention_where_the_config_has_it():
    texts = labels(unet_diagram(PRESETS["small"], 32))
    with_attention = [t for t in texts if t.startswith(("<b>down", "<b>up")) and "attention" in t]
    assert len(with_attention) == 2 and all("8x8 · 64 ch" in t for t in with_attention)
    assert any(t.startswith("<b>middle") and "attention" in t for t in texts)


@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 4), (1, 2, 2, 4), (1, 1, 2, 2, 4)])
def test_the_diagram_has_one_dashed_skip_per_level(mults):
    fig = unet_diagram({"base_channels": 8, "channel_mults": mults}, 32)
    skips = [s for s in fig.layout.shapes if s.name == SKIP_NAME]
    assert len(skips) == len(mults)
    assert all(s.line.dash == "dash" and s.y0 == s.y1 for s in skips)
    assert sum(t == "skip (concat)" for t in labels(fig)) == len(mults)
    assert not fig.layout.xaxis.visible and not fig.layout.yaxis.visible


def output_text(fig):
    (text,) = [t for t in labels(fig) if t.startswith("<b>output</b>")]
    return text


@pytest.mark.parametrize(
    ("objective", "label"),
    [("eps", "predicted noise ε"), ("x0", "predicted clean picture x<sub>0</sub>"), ("v", "predicted v")],
)
def test_the_diagram_labels_the_output_with_what_the_objective_predicts(objective, label):
    text = output_text(unet_diagram(PRESETS["tiny"], 28, objective=objective))
    assert label in text and "28x28 · 1 ch" in text
    assert [other for other in OUTPUT_LABELS.values() if other in text] == [label]
    # and through the tab's callback, as the page's objective radio sends it
    fig, _, _ = tab.describe_unet(*preset_args("tiny", image_size=28), objective)
    assert label in output_text(fig)


def test_the_diagram_and_the_tab_refuse_an_unknown_objective():
    with pytest.raises(ValueError, match="unknown objective 'noise'"):
        unet_diagram(PRESETS["seed"], 32, objective="noise")
    with pytest.raises(gr.Error, match="unknown objective 'noise'; choose one of eps, x0, v"):
        tab.describe_unet(*preset_args("seed"), "noise")


def test_the_diagram_refuses_a_size_the_net_cannot_take():
    with pytest.raises(ValueError, match="not divisible by 4"):
        unet_diagram(PRESETS["seed"], 30)


# explorer.tabs.unet


@pytest.mark.parametrize("preset", ["tiny", "small", "seed"])
def test_describe_unet_is_consistent_for_each_preset(preset):
    fig, rows, line = tab.describe_unet(*preset_args(preset))
    net = make_unet(preset)
    total = sum(p.numel() for p in net.parameters())
    assert f"**{total:,} parameters**" in line
    assert sum(row[3] for row in rows) == total
    last = "from_patches" if net.cfg.patch_size > 1 else "output_conv"  # patches back to pixels, or the conv
    assert rows[-1][0] == last and rows[-1][2] == "1 × 1 × 32 × 32"
    assert re.search(r"takes \*\*\d+\.\d ms\*\* on (cpu|cuda|mps)", line)
    assert f"the {preset} preset" in fig.layout.title.text
    shapes = level_shapes(PRESETS[preset], 32)
    texts = labels(fig)
    assert all(any(f"{r}x{r} · {c} ch" in t for t in texts) for _, r, c in shapes)


def test_an_edited_preset_is_called_custom():
    args = list(preset_args("seed"))
    args[1] = 32  # base channels
    fig, _, line = tab.describe_unet(*args)
    assert "custom U-Net (edited from seed)" in fig.layout.title.text
    assert "32x32 · 32 ch" in " ".join(labels(fig))
    total = sum(p.numel() for p in make_unet("seed", base_channels=32).parameters())
    assert f"**{total:,} parameters**" in line


def test_fill_preset_gives_the_presets_values_and_custom_keeps_them():
    assert tab.fill_preset("small") == (32, "1,2,2", 2, [2], True, 128, 1)
    assert tab.fill_preset("seed") == (64, "1,2,4", 1, [], False, 256, 1)
    assert all(isinstance(update, dict) and update.get("__type__") == "update" for update in tab.fill_preset("custom"))
    with pytest.raises(gr.Error, match="unknown preset"):
        tab.fill_preset("huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": 30}, r"input size 30x30 is not divisible by 4"),
        ({"image_size": 8}, r"input size must be a whole number from 16 to 128, got 8"),
        ({"image_size": 512}, r"input size must be a whole number from 16 to 128, got 512"),
        ({"mults": "1,x"}, r"whole numbers separated by commas, like 1,2,4; got '1,x'"),
        ({"mults": ""}, r"one whole number per level"),
        ({"mults": "1,2,4,8,8,8"}, r"give 1 to 5 levels, got 6"),
        ({"mults": "1,2,64"}, r"each channel multiplier must be from 1 to 8"),
        ({"blocks": 0}, r"residual blocks per level must be a whole number from 1 to 4, got 0"),
        ({"blocks": 1.5}, r"residual blocks per level must be a whole number"),
        ({"attention": [3]}, r"attention level \(with 3 levels\) must be a whole number from 0 to 2, got 3"),
        ({"base": 10_000}, r"base channels must be a whole number from 8 to 256"),
        ({"in_channels": 2}, r"input channels must be 1 \(grey\) or 3 \(colour\)"),
        ({"time": 4}, r"time embedding width must be a whole number from 16 to 512"),
        ({"patch": 3}, r"patch size must be one of 1, 2, 4, got 3"),
        ({"patch": 8}, r"patch size must be a whole number from 1 to 4, got 8"),
        ({"patch": 2, "image_size": 36}, r"input size 36x36 is not divisible by 8 \(2x2 patches x 2\^\(levels-1\)"),
        ({"preset": "huge"}, r"unknown preset 'huge'"),
        ({"base": 256, "mults": "1,2,4,8", "blocks": 4}, r"at most 50 M"),
        ({"base": 128, "mults": "1,2,4", "blocks": 2, "image_size": 128}, r"at most 20 G"),
        ({"base": 8, "attention": [0], "image_size": 128}, r"self-attention at 128x128 .*at most 64x64"),
        ({"mults": "1", "mid": True, "image_size": 96}, r"self-attention at 96x96"),
    ],
)
def test_bad_inputs_get_a_clear_message(change, message):
    values = {"preset": "custom", "base": 64, "mults": "1,2,4", "blocks": 1, "attention": [], "mid": False,
              "time": 256, "patch": 1, "image_size": 32, "in_channels": 1, **change}  # fmt: skip
    with pytest.raises(gr.Error, match=message):
        tab.describe_unet(*values.values())


def test_the_budget_admits_every_preset_at_the_largest_size():
    for preset in ("tiny", "small", "seed"):
        cfg, size = tab.build_config(*tab.preset_controls(preset), 128, 3)
        summary = tab.check_budget(cfg, size)
        assert summary.total_parameters <= tab.MAX_PARAMETERS and summary.macs <= tab.MAX_MACS


def test_the_tab_builds_and_names_its_endpoints():
    with gr.Blocks() as demo, gr.Tab("U-Net"):
        tab.build_tab()
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"unet_summary", "unet_preset"}
    assert all(fn.api_name for fn in demo.fns.values())
    (radio,) = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label.endswith("trained to predict")]
    assert [value for _, value in radio.choices] == list(OUTPUT_LABELS) and radio.value == tab.DEFAULT_OBJECTIVE
    (changed,) = [fn for fn in demo.fns.values() if fn.api_name == "unet_objective_summary"]
    assert changed.fn is tab.describe_unet and radio in changed.inputs  # choosing an objective redraws


def test_the_device_label_counts_threads_in_english():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert tab.device_label(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert tab.device_label(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)


def test_the_api_answers_and_refuses_with_the_same_messages(app_url):
    client = Client(app_url, verbose=False)
    assert client.predict("small", api_name="/unet_preset") == (32, "1,2,2", 2, [2], True, 128, 1)
    _, table, line = client.predict(*preset_args("tiny"), api_name="/unet_summary")
    assert table["headers"] == tab.TABLE_HEADERS and table["data"][-1][2] == "1 × 1 × 32 × 32"
    assert "**433,156 parameters**" in line
    with pytest.raises(Exception, match="input size 30x30 is not divisible by 4"):
        client.predict(*preset_args("seed", image_size=30), api_name="/unet_summary")
    with pytest.raises(Exception, match="greater than maximum value 128"):
        client.predict(*preset_args("seed", image_size=1000), api_name="/unet_summary")


def test_table_names_match_the_diagram():
    _, rows, _ = tab.describe_unet("seed", *tab.preset_controls("seed"), 32, 1)
    names = [row[0] for row in rows]
    assert "up_levels.0 (up 2)" in names and "down_levels.2 (down 2)" in names
    assert "upsamples.0 (up 2 → 1)" in names and "downsamples.0 (down 0 → 1)" in names
    assert tab.diagram_label("input_conv", 3) == "input_conv"
