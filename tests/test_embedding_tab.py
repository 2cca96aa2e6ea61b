"""Time embedding tab: plotted values equal core's embedding; bad inputs get clear messages."""

import gradio as gr
import pytest
import torch

from core.embedding import sinusoidal_embedding
from explorer.tabs.embedding import embedding_figures, parse_dims, sampled_timesteps


def test_figures_plot_the_core_embedding():
    heatmap, curves, similarity = embedding_figures(32, 100, "0, 17")
    expected = sinusoidal_embedding(torch.arange(100), 32)
    assert heatmap.data[0].z[5] == pytest.approx(expected[5].tolist(), abs=1e-3)
    assert list(curves.data[1].y) == pytest.approx(expected[:, 17].tolist())
    sim = torch.tensor(similarity.data[0].z)
    assert sim.shape == (100, 100) and torch.allclose(sim.diag(), torch.ones(100), atol=1e-3)
    assert torch.allclose(sim, sim.T)
    unit = expected / expected.norm(dim=1, keepdim=True)
    assert sim[3, 60].item() == pytest.approx((unit[3] @ unit[60]).item(), abs=1e-3)


def test_large_t_is_subsampled():
    heatmap, curves, similarity = embedding_figures(128, 4000, "0")
    assert len(heatmap.data[0].y) == 400 and heatmap.data[0].y[-1] == 3999
    assert len(similarity.data[0].z) == 250 and len(curves.data[0].x) == 4000
    assert sampled_timesteps(20, 400) == list(range(20))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((64, 1000, "0, x"), "whole numbers separated by commas"),
        ((64, 1000, ""), "at least one dimension"),
        ((64, 1000, "64"), "between 0 and 63"),
        ((2, 1000, "0"), "embedding size must be a whole number from 4 to 512"),
        ((64, 5, "0"), "T must be a whole number from 10 to 4000"),
        ((64, 1000, ",".join(str(i) for i in range(9))), "at most 8"),
    ],
)
def test_bad_inputs_get_clear_messages(args, message):
    with pytest.raises(gr.Error) as error:
        embedding_figures(*args)
    assert message in str(error.value)
    assert parse_dims(" 3,4 ", 8) == [3, 4]
