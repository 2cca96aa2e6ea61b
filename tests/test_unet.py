"""U-Net: shapes for common sizes and channels, a clear error for bad sizes, gradients, labels, config, presets."""

import pytest
import torch

from core.unet import PRESETS, UNet, UNetConfig, make_unet


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return UNet(
        UNetConfig(
            in_channels=1,
            base_channels=8,
            channel_mults=(1, 2, 2),
            time_emb_dim=16,
            attention_levels=(1,),
            mid_attention=True,
        )
    )


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_equals_input(size, channels):
    net = UNet(UNetConfig(in_channels=channels, base_channels=8, channel_mults=(1, 2, 2), time_emb_dim=16))
    x = torch.randn(2, channels, size, size)
    assert net(x, torch.tensor([0, 999])).shape == x.shape


def test_size_not_divisible_gets_clear_error(small_net):
    with pytest.raises(ValueError, match=r"input size 30x30 is not divisible by 4.*32x32"):
        small_net(torch.randn(1, 1, 30, 30), torch.tensor([1]))
    with pytest.raises(ValueError, match="takes 1 channel"):
        small_net(torch.randn(1, 3, 32, 32), torch.tensor([1]))


def test_gradients_reach_every_parameter(small_net):
    # the output conv starts at zero, so perturb it to let gradients flow back through the whole network
    net = UNet.from_config(small_net.config)
    torch.nn.init.normal_(net.output_conv.weight, std=0.1)
    out = net(torch.randn(2, 1, 16, 16), torch.tensor([3, 700]))
    out.pow(2).mean().backward()
    # every weight gets a real gradient, not rounding noise: the time embedding was once erased by a GroupNorm of
    # one channel per group and its weights then got ~1e-9. (Biases right before such a GroupNorm cancel, like a
    # bias before BatchNorm, so they only need a gradient at all.)
    missing = [
        name for name, p in net.named_parameters() if p.grad is None or (p.ndim > 1 and p.grad.abs().max() < 1e-6)
    ]
    assert missing == []


def test_labels_and_time_change_the_output():
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16, num_classes=10))
    torch.nn.init.normal_(net.output_conv.weight, std=0.1)
    x = torch.randn(1, 1, 8, 8)
    t = torch.tensor([100])
    a, b = net(x, t, torch.tensor([1])), net(x, t, torch.tensor([2]))
    null, none = net(x, t, torch.tensor([10])), net(x, t)
    assert (a - b).abs().max() > 1e-3  # a real change, not float rounding
    assert torch.allclose(null, none), "y=None must mean the 'no class' token"
    assert (a - net(x, torch.tensor([900]), torch.tensor([1]))).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"labels must be in 0..10"):
        net(x, t, torch.tensor([11]))
    unconditional = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    with pytest.raises(ValueError, match="not class-conditional"):
        unconditional(x, t, torch.tensor([1]))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_sees_time_and_label(preset):
    """Each preset's output moves with t and with the label by far more than rounding (the embedding once entered
    before a GroupNorm with one channel per group, which erased it: "tiny" was blind to t and y)."""
    torch.manual_seed(0)
    net = make_unet(preset, num_classes=10)
    torch.nn.init.normal_(net.output_conv.weight, std=0.1)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        base = net(x, torch.tensor([500, 500]), torch.tensor([3, 3]))
        other_t = net(x, torch.tensor([50, 50]), torch.tensor([3, 3]))
        other_y = net(x, torch.tensor([500, 500]), torch.tensor([7, 7]))
    scale = base.abs().mean()
    assert (base - other_t).abs().mean() > 0.01 * scale
    assert (base - other_y).abs().mean() > 0.01 * scale


def test_config_rebuilds_an_identical_model(small_net):
    clone = UNet.from_config(small_net.config)
    clone.load_state_dict(small_net.state_dict())
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([5, 500])
    torch.nn.init.normal_(clone.output_conv.weight)
    small_net.output_conv.weight.data.copy_(clone.output_conv.weight.data)
    assert torch.equal(clone(x, t), small_net(x, t))
    with pytest.raises(ValueError, match="unknown U-Net config keys"):
        UNet.from_config({**small_net.config, "depth": 3})


def test_presets():
    assert set(PRESETS) >= {"seed", "tiny", "small"}
    seed = make_unet("seed")
    assert [level.blocks[0].conv1.out_channels for level in seed.down_levels] == [64, 128, 256]
    assert seed.time_embedding.dim == 256
    counts = {name: sum(p.numel() for p in make_unet(name).parameters()) for name in PRESETS}
    assert counts["tiny"] * 10 < counts["seed"], counts
    with pytest.raises(ValueError, match="unknown preset"):
        make_unet("huge")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(channel_mults=()),
        dict(num_res_blocks=0),
        dict(attention_levels=(5,)),
        dict(dropout=1.5),
        dict(base_channels=0),
        dict(patch_size=0),
    ],
)
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        UNet(UNetConfig(**kwargs))


def test_patches_are_pixels_stacked_as_channels():
    """With patch_size 2 the network sees each 2x2 block of pixels as 4 channels at half the resolution and gives
    its prediction back at full resolution; the size check counts the patch and the levels."""
    torch.manual_seed(0)
    net = make_unet("tiny", patch_size=2, base_channels=8, channel_mults=(1, 2))
    assert net.input_conv.in_channels == 4 and net.output_conv.out_channels == 4
    assert net.size_multiple == 4
    torch.nn.init.normal_(net.output_conv.weight, std=0.1)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 900])
    out = net(x, t)
    assert out.shape == x.shape
    # the first convolution sees the 2x2 blocks: the same picture through PixelUnshuffle by hand
    blocks = x.reshape(2, 1, 14, 2, 14, 2).permute(0, 1, 3, 5, 2, 4).reshape(2, 4, 14, 14)
    assert torch.equal(net.to_patches(x), blocks)
    with pytest.raises(ValueError, match=r"2x2 patches"):
        net(torch.randn(1, 1, 30, 30), t[:1])
    clone = UNet.from_config(net.config)
    clone.load_state_dict(net.state_dict())
    assert torch.equal(clone(x, t), out)


def test_a_checkpoint_config_without_patch_size_is_unpatched():
    """Checkpoints written before patch_size existed rebuild the network they were trained as."""
    config = make_unet("tiny").config
    del config["patch_size"]
    assert UNet.from_config(config).cfg.patch_size == 1
