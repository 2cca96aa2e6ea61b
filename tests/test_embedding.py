"""Time embedding: the seed's convention pinned by values, shapes, the MLP wrapper."""

import math

import pytest
import torch

from core.embedding import TimeEmbedding, sinusoidal_embedding


def test_convention_sin_then_cos_dividing_by_half_minus_one():
    emb = sinusoidal_embedding(torch.tensor([0, 1, 500]), 8)
    half = 4
    freqs = [math.exp(-math.log(10000) * i / (half - 1)) for i in range(half)]  # 1, 0.0464, 0.00215, 1e-4
    assert freqs[-1] == pytest.approx(1e-4)
    expected_t1 = [math.sin(f) for f in freqs] + [math.cos(f) for f in freqs]
    assert emb[1].tolist() == pytest.approx(expected_t1, abs=1e-6)
    assert emb[0].tolist() == pytest.approx([0, 0, 0, 0, 1, 1, 1, 1])
    # pinned values at t = 500 (the first sine has frequency 1, the last period is 2 pi * 10000)
    assert emb[2, 0].item() == pytest.approx(math.sin(500.0), abs=1e-5)
    assert emb[2, 3].item() == pytest.approx(math.sin(0.05), abs=1e-6)
    assert emb[2, 7].item() == pytest.approx(math.cos(0.05), abs=1e-6)


def test_shapes_and_odd_dims():
    assert sinusoidal_embedding(torch.arange(5), 64).shape == (5, 64)
    odd = sinusoidal_embedding(torch.arange(3), 9)
    assert odd.shape == (3, 9) and torch.all(odd[:, -1] == 0)
    assert sinusoidal_embedding(torch.tensor(3), 16).shape == (1, 16)
    with pytest.raises(ValueError, match="embedding dim must be >= 4"):
        sinusoidal_embedding(torch.arange(3), 2)


def test_embeddings_of_distinct_timesteps_differ():
    emb = sinusoidal_embedding(torch.arange(1000), 128)
    distances = torch.cdist(emb, emb) + torch.eye(1000) * 1e3
    assert distances.min().item() > 0.05


def test_time_embedding_module():
    module = TimeEmbedding(32, 64)
    out = module(torch.tensor([1, 2, 3]))
    assert out.shape == (3, 64)
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())
