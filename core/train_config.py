"""A training run's settings: `TrainConfig`, the live-training recipe as its defaults, and its checks.

Every way to train (the Train tab, `python -m core train`, experiments, torchrun) builds one of these; `validate`
names the first bad field before any data loads. core.training runs it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from core.data import dataset_kind
from core.device import PRECISIONS
from core.diffusion import MIN_SNR_GAMMA, OBJECTIVES, TIMESTEP_SAMPLINGS, WEIGHTINGS
from core.samplers import SamplingDefaults
from core.schedules import SCHEDULE_NAMES, NoiseSchedule, make_schedule
from core.unet import PRESETS


@dataclass
class TrainConfig:
    """A training run. Defaults are the live-training recipe for the bundled digits on a CPU, chosen by
    benchmarks/recipe_search.py (60 s of "tiny" on 2 cores, 500 DDIM-50 samples scored by core.metrics against a
    real-vs-real FD floor of 19.2; benchmarks/RESULTS.md, "Live-training recipe" round 1 and round 2): x0 prediction
    on the cosine schedule (round 2, the U-Net that sees t: FD 105 and 106; v 209, eps 1077, min-SNR weighting 160,
    the linear schedule 124), bf16 autocast where native (round 1: 1.35x the steps of fp32, FD 146 -> 120 at 32x32),
    the digits' own 28x28 instead of 32x32 (1.2x the steps again: FD 120 -> 87), EMA 0.99 (FD 84 against 87-90);
    lr, the final lr ratio, gradient clipping and DDIM timestep spacing moved FD by less than the run-to-run spread
    (about +-4); batch 32 and batch 128 were worse (98, 103). Round 3 (3 seeds, n = 256, the default sampler): "tiny"
    on 2x2 patches, tune FD 143 against 160 for the 3-level network it replaced, at 1.33x the images/s. Round 4 (the
    same race): the digits' labels (class_conditional None: with labels wherever the dataset has them; sampled for
    each class with guidance 2) took tune FD from 148 to 36 with uniform timesteps; logit-normal timesteps helped
    only without labels (148 -> 112) and not with them (43 against 36), so uniform stays.
    """

    dataset: str = "mnist5k"  # any name in core.data.DATASET_NAMES (images or 2D toy points)
    image_size: int | None = None  # None: the dataset's own size (28 for digits, 32 for CIFAR-10 and own pictures)
    data_path: str | None = None  # dataset "folder": a folder or .zip of pictures
    channels: int | None = None  # dataset "folder": 1, 3, or None (1 if every picture is grayscale)
    preset: str = "tiny"  # denoiser size: "tiny", "small", "seed" (a U-Net preset, or the MLP's for points)
    class_conditional: bool | None = None  # train with labels (for guidance); None: when the dataset has labels
    p_uncond: float = 0.1  # label dropout for classifier-free guidance (conditional models only)
    schedule: str = "cosine"  # the noise schedule (core.schedules.make_schedule), with its parameters:
    num_timesteps: int = 1000  # T, the number of noising steps
    beta_start: float = 1e-4  # first beta (linear, sigmoid, scaled_linear)
    beta_end: float = 0.02  # last beta (linear, sigmoid, scaled_linear)
    cosine_s: float = 0.008  # cosine's offset s (Nichol & Dhariwal 2021)
    zero_terminal_snr: bool = False  # rescale so alpha-bar is 0 at t = T-1 (Lin et al. 2023); x0 or v only
    objective: str = "x0"  # what the network predicts: "eps", "x0" or "v"
    weighting: str = "none"  # "min_snr": Hang et al. 2023 loss weighting
    min_snr_gamma: float = MIN_SNR_GAMMA  # the min-SNR weight's cap gamma (weighting "min_snr" only)
    timestep_sampling: str = "uniform"  # which t the loss practises (core.diffusion.draw_timesteps)
    steps: int | None = 2000  # optimizer steps (an upper bound when time_budget is set)
    time_budget: float | None = None  # seconds of wall-clock training; None: run all steps
    batch_size: int = 64
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.0
    warmup_steps: int = 50  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    ema_decay: float = 0.99  # EMA of the weights, with a warm-up (1 + n) / (10 + n)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None  # CPU threads; None: one per available core
    precision: str = "auto"  # "auto" (bf16 autocast where native: CUDA, CPUs with bf16 units), "bf16" or "fp32"
    num_buckets: int = 10  # the loss is also tracked per tenth of [0, T)
    # the sampler settings the checkpoint records (config.json "sampling_defaults"); None: the defaults
    # (SamplingDefaults.for_objective: DPM-Solver++(2M) SDE, 10 steps, trailing timesteps)
    sample_sampler: str | None = None  # a name in core.samplers.SAMPLERS
    sample_steps: int | None = None  # sampler steps (default: that sampler's usual, core.samplers.default_steps)
    sample_eta: float | None = None  # DDIM's fresh noise per step, 0..1
    sample_spacing: str | None = None  # the noise levels (core.noise_levels.SPACINGS)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, before any data loads or any network is built."""

        def positive_int(name: str, value: object, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        if self.schedule not in SCHEDULE_NAMES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(
                f"unknown timestep sampling {self.timestep_sampling!r}; choose one of {', '.join(TIMESTEP_SAMPLINGS)}"
            )
        if self.class_conditional not in (None, True, False):
            raise ValueError(
                f"class_conditional must be True, False or None (when the dataset has labels), got "
                f"{self.class_conditional!r}"
            )
        if isinstance(self.min_snr_gamma, bool) or not (0 < self.min_snr_gamma < math.inf):
            raise ValueError(f"min_snr_gamma must be a positive number (Hang et al. use 5), got {self.min_snr_gamma!r}")
        self.noise_schedule()  # bad schedule parameters -> ValueError saying which
        if self.zero_terminal_snr and self.objective == "eps":
            raise ValueError(
                "eps prediction cannot be trained with zero terminal SNR: at t = T-1 alpha-bar is 0, so the sampler's "
                "x0 = (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar) divides by zero and the model could never "
                "start from pure noise; choose objective x0 or v (Lin et al. 2023 use v)"
            )
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        dataset_kind(self.dataset)  # an unknown name -> ValueError listing the names
        if (self.data_path is not None or self.channels is not None) and self.dataset != "folder":
            raise ValueError(f"data_path and channels are for dataset 'folder', not {self.dataset!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {self.channels!r}")
        positive_int("steps", self.steps, allow_none=True)
        positive_int("batch_size", self.batch_size)
        positive_int("num_buckets", self.num_buckets)
        positive_int("num_threads", self.num_threads, allow_none=True)
        if self.steps is None and self.time_budget is None:
            raise ValueError("give steps, time_budget or both")
        if self.time_budget is not None and not (0 < self.time_budget < math.inf):
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        if not (0 < self.lr <= 1.0) or not math.isfinite(self.lr):
            raise ValueError(f"lr must be in (0, 1], got {self.lr!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must be in [0, 1], got {self.p_uncond!r}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("grad_clip, weight_decay and warmup_steps must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in 0..2^63-1, got {self.seed!r}")
        self.sampling_defaults()

    def noise_schedule(self) -> NoiseSchedule:
        """The schedule this run trains with: `schedule` and its parameters through make_schedule."""
        return make_schedule(
            self.schedule,
            self.num_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            cosine_s=self.cosine_s,
            zero_terminal_snr=self.zero_terminal_snr,
        )

    def sampling_defaults(self) -> SamplingDefaults:
        """The sampler settings a checkpoint of this run records: its objective's, with those set here (a T below
        the usual 50 DDIM steps records T steps)."""
        try:
            recorded = SamplingDefaults.for_objective(self.objective)
            steps = self.sample_steps
            if steps is None and self.sample_sampler in (None, recorded.sampler):
                steps = min(recorded.steps, self.num_timesteps) if isinstance(self.num_timesteps, int) else None
            return recorded.override(
                sampler=self.sample_sampler,
                steps=steps,
                eta=self.sample_eta,
                spacing=self.sample_spacing,
                num_timesteps=self.num_timesteps,
            )
        except ValueError as error:
            raise ValueError(f"sampling defaults: {error}") from error

    def conditional_on(self, has_labels: bool) -> bool:
        """Whether this run trains with labels on a dataset that has them (or not): as set, or when it has them."""
        return has_labels if self.class_conditional is None else bool(self.class_conditional)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
