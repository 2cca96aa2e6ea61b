"""GPU memory for the app's runs (explorer/gpu_memory.py, explorer/jobs.py): each run's share of a shared GPU, the
estimate it is checked against, and out of memory as advice, never a crash. No GPU is needed: the CUDA memory
queries are replaced by numbers, and out of memory is raised where the GPU would raise it."""

import dataclasses

import gradio as gr
import pytest
import torch

import explorer.jobs as jobs
from core.data import load_dataset
from core.diffusion import training_loss
from core.schedules import make_schedule
from core.training import TrainConfig, make_denoiser
from explorer.gpu_memory import (
    FLOAT_BYTES,
    KEPT_PER_OUTPUT,
    MemoryBudget,
    OverMemoryBudget,
    sampling_need,
    training_need,
)
from explorer.jobs import run_job
from explorer.sessions import SessionRegistry
from explorer.training_run import train_live

GB = 10**9
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def gpu_with(monkeypatch):
    """A 16 GB GPU with `free` bytes free, of which PyTorch holds 1 GB reserved and 0.5 GB allocated."""

    def make(free: int) -> None:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 * GB))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1 * GB)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: GB // 2)

    return make


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path, max_jobs=2, max_waiting=1, compute_threads=1)


def test_off_cuda_every_run_fits():
    budget = MemoryBudget(CPU)
    assert budget.share(3) is None
    budget.check(10**15, 3, "training")  # nothing is checked on the CPU
    budget.check(lambda: pytest.fail("estimated on the CPU"), 3, "sampling")  # nor estimated


def test_an_estimate_given_as_a_callable_is_asked_on_cuda(gpu_with):
    gpu_with(free=8 * GB)
    budget = MemoryBudget(CUDA, reserve=0.1)
    budget.check(lambda: 3 * GB, 4, "training")
    with pytest.raises(OverMemoryBudget, match=r"needs about 5\.00 GB"):
        budget.check(lambda: 5 * GB, 4, "training")


def test_a_run_s_share_is_what_is_free_and_at_most_its_part_of_the_gpu(gpu_with):
    gpu_with(free=8 * GB)
    budget = MemoryBudget(CUDA, reserve=0.1)
    # free 8 GB + 0.5 GB cached unused - 1.6 GB reserve; a fourth of 14.4 GB with 4 runs
    assert budget.share(1) == pytest.approx(6.9 * GB)
    assert budget.share(4) == pytest.approx(3.6 * GB)
    budget.check(3 * GB, 4, "training")
    with pytest.raises(
        OverMemoryBudget, match=r"needs about 5.00 GB .* share is 3.60 GB \(4 runs share .* smaller batch"
    ):
        budget.check(5 * GB, 4, "training")
    with pytest.raises(OverMemoryBudget, match="fewer pictures"):
        budget.check(7 * GB, 1, "sampling")


@pytest.mark.parametrize("dataset", ["mnist5k", "moons"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_training_estimate_bounds_what_a_step_keeps_for_its_backward_pass(dataset, precision):
    data = load_dataset(dataset, split="train").subset(64)
    config = TrainConfig(dataset=dataset, batch_size=16, precision=precision, device="cpu")
    need = training_need(config, data, CPU)
    model = make_denoiser(config, data)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}  # what autograd saves for backward in a real step on the CPU, by storage, the weights themselves aside

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in weights:
            kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        training_loss(model, make_schedule("cosine"), data.tensor[:16], objective=config.objective)
    weight_bytes = sum(p.numel() for p in model.parameters()) * FLOAT_BYTES
    step = need - 5 * weight_bytes - data.tensor.numel() * FLOAT_BYTES
    assert sum(kept.values()) <= step <= 4 * sum(kept.values()), (sum(kept.values()), step)
    bigger = training_need(dataclasses.replace(config, batch_size=32), data, CPU)
    assert bigger - need == 16 * KEPT_PER_OUTPUT * (sampling_need(model, data.tensor.shape[1:], 1) - weight_bytes)


def test_the_sampling_estimate_grows_with_the_pictures_and_doubles_its_activations_with_guidance():
    data = load_dataset("mnist5k", split="train").subset(8)
    model = make_denoiser(TrainConfig(), data)
    one, many = sampling_need(model, (1, 28, 28), 1), sampling_need(model, (1, 28, 28), 65)
    guided = sampling_need(model, (1, 28, 28), 65, guidance=True)
    assert many - one == 64 * (one - sum(p.numel() for p in model.parameters()) * FLOAT_BYTES)
    assert guided - many == many - sum(p.numel() for p in model.parameters()) * FLOAT_BYTES
    assert sampling_need(torch.nn.Linear(2, 2), (2,), 10) is None  # no core config: nothing to estimate from


def test_a_run_over_its_share_is_refused_with_advice_before_its_work_starts(registry, gpu_with):
    gpu_with(free=2 * GB)
    registry.memory = MemoryBudget(CUDA)
    started = []

    def work(job):
        started.append(job)
        yield "step"

    with pytest.raises(gr.Error, match=r"needs about 100 GB .* \(what the GPU has free now\)"):
        list(run_job(registry, registry.session("alice"), "sampling", work, waiting=str, memory=100 * GB))
    assert not started and registry.active("sampling") == 0
    assert list(run_job(registry, registry.session("alice"), "sampling", work, waiting=str, memory=GB // 2)) == ["step"]


def test_a_training_over_its_share_is_refused_once_its_data_is_loaded(registry, gpu_with):
    gpu_with(free=GB // 100)  # 10 MB: less than the digits alone
    registry.memory = MemoryBudget(CUDA)
    config = TrainConfig(steps=2, batch_size=8, device="cpu")

    def work(job):
        yield from train_live(config, compute=job.compute, check_memory=job.check_memory)

    with pytest.raises(gr.Error, match=r"This training run needs about .* smaller batch"):
        list(run_job(registry, registry.session("bob"), "training", work, waiting=str))
    assert registry.active("training") == 0


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"),
    ],
)
def test_out_of_memory_in_a_sampling_run_becomes_advice_and_the_next_run_goes(registry, monkeypatch, error):
    released = []
    monkeypatch.setattr(jobs, "release_cached_memory", lambda: released.append(True))

    def exhausted(job):
        yield "first step"
        job.compute(lambda: (_ for _ in ()).throw(error))  # raised on the compute worker, as the GPU would
        yield "never"

    session = registry.session("carol")
    outputs = run_job(registry, session, "sampling", exhausted, waiting=str)
    assert next(outputs) == "first step"
    with pytest.raises(gr.Error, match="Out of memory during this sampling run: ask for fewer pictures"):
        next(outputs)
    assert released and session.job is None
    other = run_job(registry, session, "sampling", lambda job: iter([job.compute(lambda: "fine")]), waiting=str)
    assert list(other) == ["fine"]


def test_other_runtime_errors_still_pass_through(registry):
    def broken(job):
        raise RuntimeError("a bug, not memory")
        yield

    with pytest.raises(RuntimeError, match="a bug"):
        list(run_job(registry, registry.session("dave"), "sampling", broken, waiting=str))


def test_a_sampling_request_s_need_counts_its_pictures_and_guidance():
    from explorer.models import DEFAULT_MODEL, pretrained
    from explorer.sampling_run import check_request, memory_need

    entry = pretrained(DEFAULT_MODEL)
    shape = tuple(entry.checkpoint.sample_shape)
    request = check_request(entry, "DDIM", 10, 0.0, 0, 16)
    assert memory_need(entry, request) == sampling_need(entry.model, shape, 16) > 0


def test_the_sample_tab_refuses_a_request_over_its_share_of_the_gpu(registry, gpu_with):
    from explorer.models import DEFAULT_MODEL
    from explorer.tabs.sample import SampleTab

    gpu_with(free=GB // 100)  # 10 MB free: less than the run's pictures need
    registry.memory = MemoryBudget(CUDA)
    controls = dict(model=DEFAULT_MODEL, sampler="DDIM", steps=5, eta=0.0, seed=0, count=64, class_choice=None,
                    guidance=1.0)  # fmt: skip
    with pytest.raises(gr.Error, match=r"This sampling run needs about .* Try fewer pictures"):
        list(SampleTab(registry).sample(**controls))
    assert registry.active("sampling") == 0
