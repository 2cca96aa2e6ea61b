"""Run DDPM Explorer: `python app.py` serves the app on 127.0.0.1:7860.

GRADIO_SERVER_NAME and GRADIO_SERVER_PORT are respected (Hugging Face Spaces sets them). `demo` is importable.
"""

from explorer.app import CSS, LAUNCH_OPTIONS, build_app
from explorer.warm_up import warm_up

demo = build_app()

if __name__ == "__main__":
    demo.launch(css=CSS, prevent_thread_lock=True, **LAUNCH_OPTIONS)
    warm_up()  # once the page answers: what the first clicks would otherwise wait for (explorer/warm_up.py)
    demo.block_thread()
