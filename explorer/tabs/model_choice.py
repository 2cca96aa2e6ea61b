"""The Sample tab's choice of model: the menu (pretrained models, the user's own, uploads, Hub models), what changes
when a model is chosen (its description, sampler settings, classes, sample count), and where models come from besides
training: a zip upload (a checkpoint of this project, or a zipped diffusers pipeline folder: core.checkpoint_archive)
and a diffusers pipeline fetched from the Hugging Face Hub by its id (core.hub, explorer.models.hub_entry).

`ModelChoice` holds these callbacks (explorer.tabs.sample.SampleTab is one); `build_model_sources` lays out and
wires the upload and Hub controls. A refused zip or Hub id gets a message (gr.Error) and changes nothing: the model in
use and the menu stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from core.checkpoint import CheckpointError
from core.checkpoint_archive import unpack_model
from core.diffusers_pipeline import MAX_PIPELINE_BYTES, MAX_SIDE
from core.hub import EXAMPLE_ID, HubError, check_repo_id
from explorer.models import DEFAULT_MODEL, ModelEntry, hub_entry, load_entry, pretrained, pretrained_names
from explorer.sampling_run import max_count
from explorer.sessions import SessionRegistry, UserSession
from explorer.tabs.sampler_controls import defaults_update
from explorer.widgets import explanation, session_key

EACH_CLASS_CHOICE = "each class in turn"
NO_CLASS_CHOICE = "none (unconditional)"
DEFAULT_IMAGES = 16
DEFAULT_POINTS = 500
HUB_GROUP = "hub"  # Hub fetches share places of their own: a download never holds a sampling place
HUB_CONCURRENCY = 2


def class_choices(entry: ModelEntry) -> list[str]:
    if entry.num_classes is None:
        return [NO_CLASS_CHOICE]
    return [EACH_CLASS_CHOICE, *(str(c) for c in range(entry.num_classes))]


def count_slider(entry: ModelEntry, value: int | None = None) -> gr.Slider:
    """The sample-count slider's update for this model: its bound and label (and `value`, if given, within the
    bound)."""
    most = max_count(entry)
    label = "Number of points" if entry.is_points else "Number of images"
    return gr.Slider(maximum=most, label=label, **({} if value is None else {"value": min(value, most)}))


class ModelChoice:
    """The callbacks that choose and add models, bound to one SessionRegistry."""

    def __init__(self, registry: SessionRegistry):
        self.registry = registry

    def user_session(self, request: gr.Request | None) -> UserSession:
        return self.registry.session(session_key(request))

    def model_names(self, session: UserSession) -> list[str]:
        return [*pretrained_names(), *session.models]

    def resolve(self, name: str, session: UserSession) -> ModelEntry:
        entry = session.models.get(name) or pretrained(name)
        if entry is None:
            raise gr.Error(f"unknown model {name!r}; choose one of: {', '.join(self.model_names(session))}")
        return entry

    def model_menu(self, current: str | None = None, request: gr.Request | None = None) -> gr.Dropdown:
        """The model menu with this user's own models (keeps the current choice when it still exists)."""
        names = self.model_names(self.user_session(request))
        return gr.Dropdown(choices=names, value=current if current in names else DEFAULT_MODEL)

    def count_range(self, name: str, request: gr.Request | None = None) -> gr.Slider:
        """The sample-count slider's range for this model, keeping the user's value. The slider is built with the
        server-wide bound (MAX_POINTS) so that a script may ask a 2D model for points without opening the page;
        the page narrows it for image models when the tab opens (explorer.sampling_run.max_count: MAX_IMAGES, fewer
        for large pictures), and check_request refuses more with a message either way."""
        return count_slider(self.resolve(name, self.user_session(request)))

    def describe_model(self, name: str, request: gr.Request | None = None) -> tuple:
        """When the model changes: its description, the sampler and steps and eta its checkpoint samples best with
        (the user may change them afterwards), the class menu, the sample-count range, the paths plot, and last
        (added later, so older scripts find the others where they were) the spacing it samples best with."""
        entry = self.resolve(name, self.user_session(request))
        classes = class_choices(entry)
        count = count_slider(entry, value=DEFAULT_POINTS if entry.is_points else DEFAULT_IMAGES)
        sampler, spacing, steps, eta = defaults_update(entry.sampling_defaults)
        return (
            entry.describe(),
            sampler,
            steps,
            eta,
            gr.Dropdown(choices=classes, value=classes[0], interactive=entry.num_classes is not None),
            gr.Slider(interactive=entry.num_classes is not None),
            count,
            gr.Plot(visible=entry.is_points),
            spacing,
        )

    def _added(self, session: UserSession, name: str, entry: ModelEntry) -> tuple:
        name = self.registry.add_model(session, name, entry)
        return gr.Dropdown(choices=self.model_names(session), value=name), f"Added **{name}** to the menu."

    def upload_model(self, path: str | None, request: gr.Request | None = None) -> tuple:
        """Add an uploaded zip to this user's menu: a checkpoint of this project (the Train tab's download) or a
        zipped diffusers pipeline folder; anything else is refused with a message."""
        if not path:
            raise gr.Error("Choose a checkpoint .zip first (the Train tab's download, or a zipped diffusers pipeline).")
        session = self.user_session(request)
        folder = session.new_path("upload")
        try:
            unpack_model(path, folder)
            name = f"uploaded: {path.rsplit('/', 1)[-1].removesuffix('.zip')}"
            entry = load_entry(name, folder)
        except CheckpointError as error:
            raise gr.Error(f"This checkpoint was refused: {error}") from None
        return self._added(session, name, entry)

    def load_from_hub(self, repo_id: str | None, request: gr.Request | None = None) -> Iterator[tuple]:
        """Callback of "Load from the Hub": fetch the diffusers pipeline `repo_id` (size checked first, fetched once
        per server, core.hub) and add it to this user's menu, yielding (menu, note); a bad id, a model that is too
        large or not a pipeline, or an offline server get a message."""
        session = self.user_session(request)
        try:
            repo_id = check_repo_id(repo_id)
        except HubError as error:
            raise gr.Error(str(error)) from None
        yield gr.update(), f"Checking **{repo_id}** on the Hub, then fetching it (the first time only)…"
        try:
            entry = hub_entry(repo_id)
        except (HubError, CheckpointError) as error:
            raise gr.Error(f"{repo_id} could not be used: {error}") from None
        yield self._added(session, entry.name, entry)


def build_model_sources(tab: ModelChoice, model: gr.Dropdown) -> None:
    """Layout and wiring of the upload and Hub controls that add models to the `model` menu."""
    with gr.Accordion("Use a checkpoint you downloaded earlier, or a diffusers model", open=False):
        upload = gr.File(label="Model .zip", file_types=[".zip"], type="filepath", elem_id="sample-upload")
        explanation(
            "A checkpoint .zip from the Train tab, or a diffusers pipeline folder (model_index.json, unet/, "
            "scheduler/) zipped; weights only as .safetensors, never pickles."
        )
        with gr.Row():
            repo = gr.Textbox(
                label="Hugging Face Hub model id",
                placeholder=EXAMPLE_ID,
                info=f"A diffusers DDPM pipeline by its id (owner/name), pictures up to {MAX_SIDE} px; the server "
                f"fetches it once if it is online and the model is under {MAX_PIPELINE_BYTES // 2**20} MB.",
                scale=3,
            )
            fetch = gr.Button("Load from the Hub", scale=1, elem_id="sample-hub")
        note = gr.Markdown(elem_id="sample-upload-note")
    upload.upload(tab.upload_model, upload, [model, note], api_name="upload_checkpoint")
    hub_event = dict(concurrency_id=HUB_GROUP, concurrency_limit=HUB_CONCURRENCY, api_name="load_hub_model")
    fetch.click(tab.load_from_hub, repo, [model, note], **hub_event)
    repo.submit(tab.load_from_hub, repo, [model, note], **{**hub_event, "api_name": False})
