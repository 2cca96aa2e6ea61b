"""What a fresh server's first clicks would otherwise wait for, done once after the page answers (app.py).

On a CPU the first training step of a network shape pays for oneDNN building its kernels: the Train tab's default
run has shown its first loss point 5 s after Start in a fresh process, 0.1 s in the process's next run (measured
ad hoc on this 2-core machine); the first sampling of a model pays the same for inference. So the warm-up trains
the default run for a few steps to its end (its final preview too), samples the lesson's two pictures (the default
digits, and 3s with guidance 4), and loads the shipped models; every optimizer imports torch._dynamo on first use
(1.6 s).
"""

from __future__ import annotations

from explorer.models import pretrained, pretrained_names
from explorer.sampling_run import check_request, sample_request
from explorer.tabs.lesson import CHAPTERS
from explorer.tabs.model_choice import DEFAULT_IMAGES
from explorer.tabs.train import default_training
from explorer.training_run import train_live

WARM_UP_STEPS = 3
# (model, class, guidance) of every Sample view the lesson's chapters open
LESSON_SAMPLES = tuple(
    (view["model"], int(view["class"]) if "class" in view else None, float(view.get("guidance", 1.0)))
    for view in (chapter.view for chapter in CHAPTERS)
    if view["tab"] == "sample"
)


def warm_up() -> None:
    """Import, load, train and sample once what the lesson's first clicks use (1.7 s after the imports, measured
    ad hoc on 2 cores)."""
    import torch._dynamo  # noqa: F401

    for name in pretrained_names():
        pretrained(name)
    for _update in train_live(default_training("steps", WARM_UP_STEPS)):
        pass
    for name, label, guidance in LESSON_SAMPLES:
        entry = pretrained(name)
        if entry is None:
            continue
        defaults = entry.sampling_defaults
        request = check_request(
            entry, defaults.sampler, defaults.steps, defaults.eta, 0, DEFAULT_IMAGES, label, guidance, defaults.spacing
        )
        for _step in sample_request(entry, request):
            pass
