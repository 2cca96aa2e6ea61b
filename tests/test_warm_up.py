"""explorer/warm_up.py: what app.py does once the page answers runs through, loads every shipped model and leaves
the lesson's first training and samples nothing left to build (its speed is benchmarks/ui_latency.py's)."""

from __future__ import annotations

from explorer import models
from explorer.warm_up import LESSON_SAMPLES, warm_up


def test_warm_up_loads_the_shipped_models_and_runs_the_lessons_work(one_torch_thread):
    models._pretrained.cache_clear()
    warm_up()
    assert models._pretrained.cache_info().currsize == len(models.pretrained_names())
    assert {name for name, _label, _guidance in LESSON_SAMPLES} <= set(models.pretrained_names())
