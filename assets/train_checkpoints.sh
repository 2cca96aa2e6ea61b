#!/usr/bin/env bash
# The pretrained checkpoints in assets/checkpoints/, made with the project's own command line (core/cli.py).
# Run from the repository root: bash assets/train_checkpoints.sh   (about 18 minutes on 2 CPU cores)
# Fixed step counts (not time budgets) and seeds, so the same machine and thread count give the same weights.
# --no-training-state keeps only the weights and their EMA (sampling uses the EMA): what a user downloads.
set -euo pipefail
out=assets/checkpoints
common=(--num-threads 2 --device cpu --no-training-state)
# the recipe of their day trained with labels only when asked (since 2026-12-04 the default is class-conditional
# wherever the dataset has labels), so each says which; it drew timesteps uniformly, as the default still does
before=(--timestep-sampling uniform)

# digits: the live-training recipe of their day (the U-Net "tiny" was until 2026-12-03, now "tiny-3-level"; x0 on
# cosine, the digits' own 28x28, bf16 autocast where native),
# trained longer, with a slower EMA to match the longer run; config.json records the sampling defaults
# (DPM-Solver++(2M) SDE, 10 steps, trailing: the best at 10 network calls, benchmarks/RESULTS.md "Sampler quality:
# mnist_uncond")
python -m core train --dataset mnist5k --preset tiny-3-level --steps 8000 --ema-decay 0.999 "${common[@]}" \
    "${before[@]}" --no-class-conditional --out "$out/mnist_uncond"
python -m core train --dataset mnist5k --preset tiny-3-level --steps 8000 --ema-decay 0.999 "${common[@]}" \
    "${before[@]}" --class-conditional --p-uncond 0.1 --out "$out/mnist_cond"

# 2D toy sets: the tiny MLP (its preset includes six Fourier features of the input, without which the spiral came
# out as a disk), eps prediction (x0 prediction blurs separated modes: eight Gaussians came out as a ring), larger
# batches of points; they record DDIM-50 with eta 1 on leading timesteps for sampling (on these toys eta 1 beat
# eta 0 on average when only DDPM and DDIM existed; their sweep of the new samplers is still to be run)
for name in moons swiss_roll eight_gaussians checkerboard spiral; do
    python -m core train --dataset "$name" --preset tiny --objective eps --steps 10000 --batch-size 256 --lr 3e-3 \
        --warmup-steps 100 --sample-sampler ddim --sample-steps 50 --sample-eta 1 --sample-spacing leading \
        "${common[@]}" "${before[@]}" --no-class-conditional --out "$out/toy_$name"
done
