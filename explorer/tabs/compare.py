"""Compare two samplers from the same starting noise: a section of the Sample tab, under its main run.

A (the Sample tab's own settings) and B (this section's sampler, spacing, steps and eta) start from the very same
x_T and the same fresh noise for the steps that add some, so any difference between the two grids is the sampler's.
The two may make different numbers of network calls; the run goes through explorer.jobs.run_job like every heavy
run, as one sampling job of A's calls plus B's, and its progress counts them.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from explorer.jobs import Job, run_job, throttled
from explorer.sampling_run import check_settings, memory_need, sample_request
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP
from explorer.tabs.sample import FRAME_INTERVAL, SampleTab
from explorer.tabs.sampler_controls import build_sampler_controls
from explorer.trajectory import Trajectory, step_pictures
from explorer.widgets import explanation, pixel_picture, progress_html

DEFAULT_SAMPLER_B = "DDPM"  # B starts as DDPM with A's steps and spacing: the original sampler at the same cost

COMPARE_INTRO = r"""
Runs the settings above (**A**) and the ones here (**B**) from the very same $x_T$, with the same fresh noise for
the steps that add some: any difference is the sampler's. B starts as DDPM with A's steps and spacing, so both make
about as many network calls: what the newer sampler buys at that cost.

**What to look for.** Set A to DDIM with eta 1 and B to DDPM, both with 50 steps and the *leading* spacing: the two
grids are the same, digit for digit: DDIM with eta 1 *is* DDPM. Now set eta to 0 and B to DDIM with 10 steps: the
same digits again, a little rougher, from a fifth of the network calls. With eta 0 nothing random is added on the
way, so $x_T$ alone decides every digit. Give A and B different etas, or eta 1 and different step counts, and many
digits change: each step then adds fresh noise, and that noise decides the digit as much as $x_T$ does. Then try
B = DPM++ 2M with the *karras* spacing and 10 steps: few calls, clean digits.
"""


class CompareSection:
    """Compare's callback, bound to the Sample tab whose settings are A."""

    def __init__(self, tab: SampleTab):
        self.tab = tab

    def compare(
        self,
        request: gr.Request | None = None,
        *,
        sampler_b: str,
        steps_b: float,
        eta_b: float,
        spacing_b: str | None = None,
        **controls: object,
    ) -> Iterator[tuple]:
        """Callback of Compare, given the main controls by name (see SampleTab.checked_request) and B's: runs the
        main settings (A) and the second ones (B) from the same x_T and yields (progress, A's picture, B's picture,
        caption). spacing_b None: the one the model records."""
        session = self.tab.user_session(request)
        entry, checked = self.tab.checked_request(session, **controls)
        try:
            settings_b = check_settings(entry, sampler_b, steps_b, eta_b, spacing_b)
        except ValueError as error:
            raise gr.Error(f"second sampler: {error}") from None
        sides = (checked.settings, settings_b)
        total = sum(settings.calls for settings in sides)

        def work(job: Job) -> Iterator[tuple]:
            results: list[Trajectory] = []
            for side, settings in enumerate(sides):
                trajectory = None
                run = sample_request(entry, checked, settings, compute=job.compute, stop=job.stopped)
                for step, trajectory in throttled(run, FRAME_INTERVAL * 4):  # noqa: B007 (one growing object, used below)
                    done = step.index + 1 + side * checked.settings.calls
                    picture = step_pictures(step, entry.is_points, entry.reference_points)[0]
                    outputs = (picture, gr.update()) if side == 0 else (gr.update(), picture)
                    text = f"{('A', 'B')[side]}: {settings.title}: network call {step.index + 1} of {settings.calls}"
                    yield progress_html(done, total, text), *outputs, gr.update()
                if trajectory is None or not trajectory.complete:
                    yield progress_html(0, total, "Stopped."), gr.update(), gr.update(), gr.update()
                    return
                results.append(trajectory)
            a, b = results
            caption = (
                f"Same x_T (seed {checked.seed}). **A: {a.title}**: {a.num_calls} network calls, {a.seconds:.2f} s. "
                f"**B: {b.title}**: {b.num_calls} network calls, {b.seconds:.2f} s "
                f"({b.seconds / max(a.seconds, 1e-9):.2f}x A's time)."
            )
            yield progress_html(total, total, "Done."), a.pictures(len(a) - 1)[0], b.pictures(len(b) - 1)[0], caption

        yield from run_job(
            self.tab.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (progress_html(0, total, text), gr.update(), gr.update(), gr.update()),
            memory=lambda: memory_need(entry, checked),  # the two sides run one after the other
        )


def build_section(tab: SampleTab) -> CompareSection:
    """Layout and wiring of the Compare section, placed where it is called (under the Sample tab's main run)."""
    section = CompareSection(tab)
    with gr.Accordion("Compare two samplers from the same starting noise", open=False):
        explanation(COMPARE_INTRO)
        b = build_sampler_controls(tab.start, sampler=DEFAULT_SAMPLER_B, prefix="B: ", elem_prefix="compare", row=True)
        compare_button = gr.Button("Compare A and B", elem_id="sample-compare")
        compare_progress = gr.HTML()
        with gr.Row():
            image_a = pixel_picture("A: final samples", "With the settings above.", 340)
            image_b = pixel_picture("B: final samples", "With the settings here, from the same $x_T$.", 340)
        compare_caption = gr.Markdown()

    compare_button.click(
        section.compare,
        inputs_kwargs={
            **tab.controls,
            "sampler_b": b.sampler,
            "steps_b": b.steps,
            "eta_b": b.eta,
            **tab.later_controls,
            "spacing_b": b.spacing,
        },
        outputs=[compare_progress, image_a, image_b, compare_caption],
        api_name="compare",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    return section
