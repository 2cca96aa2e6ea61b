"""DDPM Explorer's diffusion core: schedules, embedding, U-Net, losses, samplers, training, checkpoints.

Pure PyTorch, no Gradio or plotly, usable alone from Python and from the command line (`python -m core`).
"""

__version__ = "0.1.0"
