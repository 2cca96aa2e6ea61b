"""One module per tab. Each exposes `build_tab() -> None`, called inside a `gr.Tab` by explorer/app.py; its
callbacks are plain module-level functions, testable without a browser."""
