"""Forward process tab: pictures equal core's q_sample, the comparison uses the same noise, bad input is refused."""

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from core.diffusion import q_sample
from core.imaging import to_uint8
from core.schedules import make_schedule
from explorer.images import example_images
from explorer.tabs.forward import (
    MY_UPLOAD,
    cached_noise,
    forward_step,
    forward_strip,
    nearest_log_snr_step,
    picture_tensor,
)

EXAMPLE = next(iter(example_images()))


def test_x_t_and_its_parts_equal_the_core():
    x_t, signal, noise, histogram, left, right, caption = forward_step(EXAMPLE, None, "cosine", 300, 7, "linear", False)
    x0 = picture_tensor(EXAMPLE, None)
    eps = cached_noise(7, tuple(x0.shape))
    schedule = make_schedule("cosine")
    expected = to_uint8(q_sample(schedule, x0, 300, eps))[0]
    assert np.array_equal(x_t.reshape(expected.shape), expected)
    a = schedule.alphas_cumprod[300].item()
    assert np.array_equal(signal.reshape(expected.shape), to_uint8(a**0.5 * x0)[0])
    assert np.array_equal(noise.reshape(expected.shape), to_uint8((1 - a) ** 0.5 * eps)[0])
    counts = np.asarray(histogram.data[0].y)
    assert counts.sum() * histogram.data[0].width == pytest.approx(1.0, abs=1e-6)  # a density
    assert np.array_equal(left, x_t)
    expected_right = to_uint8(q_sample(make_schedule("linear"), x0, 300, eps))[0]
    assert np.array_equal(right.reshape(expected_right.shape), expected_right)
    assert "cosine** at t = 300" in caption and "the same t" in caption


def test_the_image_changes_with_t_and_seed():
    base = forward_step(EXAMPLE, None, "linear", 100, 0, "cosine", False)[0]
    assert not np.array_equal(base, forward_step(EXAMPLE, None, "linear", 600, 0, "cosine", False)[0])
    assert not np.array_equal(base, forward_step(EXAMPLE, None, "linear", 100, 1, "cosine", False)[0])
    assert np.array_equal(base, forward_step(EXAMPLE, None, "linear", 100, 0, "cosine", False)[0])


def test_matching_log_snr_compares_at_equal_noise_level():
    linear, cosine = make_schedule("linear"), make_schedule("cosine")
    t_other = nearest_log_snr_step(linear, 200, cosine)
    assert abs(cosine.log_snr[t_other] - linear.log_snr[200]) <= abs(cosine.log_snr[t_other + 1] - linear.log_snr[200])
    assert t_other > 200, "cosine reaches linear's noise level later: it keeps more signal early"
    caption = forward_step(EXAMPLE, None, "linear", 200, 0, "cosine", True)[6]
    assert f"at t = {t_other}" in caption and "nearest log-SNR" in caption


def test_strip_has_eight_steps_from_clean_to_noise():
    strip = forward_strip(EXAMPLE, None, "linear", 0)
    assert [caption for _, caption in strip] == [f"t = {t}" for t in (0, 143, 285, 428, 571, 714, 856, 999)]
    first, last = strip[0][0].astype(float), strip[-1][0].astype(float)
    assert first.std() > 0 and not np.array_equal(first, last)


def test_an_uploaded_picture_is_used(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (400, 200), (255, 0, 0)).save(path)
    x0 = picture_tensor(MY_UPLOAD, str(path))
    assert x0.shape == (1, 3, 128, 256)
    assert torch.allclose(x0[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    x_t = forward_step(MY_UPLOAD, str(path), "linear", 0, 0, "cosine", False)[0]
    assert x_t.shape == (128, 256, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((EXAMPLE, None, "linear", 1000, 0, "cosine", False), "t must be a whole number from 0 to 999"),
        ((EXAMPLE, None, "linear", -1, 0, "cosine", False), "t must be a whole number"),
        ((EXAMPLE, None, "linear", 10, -5, "cosine", False), "seed must be a whole number"),
        ((EXAMPLE, None, "quadratic", 10, 0, "cosine", False), "unknown schedule"),
        (("nonexistent", None, "linear", 10, 0, "cosine", False), "unknown picture"),
        ((MY_UPLOAD, None, "linear", 10, 0, "cosine", False), "Upload a picture first"),
    ],
)
def test_bad_inputs_get_clear_messages(args, message):
    with pytest.raises(gr.Error) as error:
        forward_step(*args)
    assert message in str(error.value)


def test_unreadable_upload_gets_a_clear_message(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(gr.Error, match="could not read this image"):
        forward_step(MY_UPLOAD, str(path), "linear", 10, 0, "cosine", False)
