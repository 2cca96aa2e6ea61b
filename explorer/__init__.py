"""DDPM Explorer's Gradio app: figures, image handling, sessions and tabs. Calls `core`, never the reverse."""
