"""The command line's progress (core/progress.py): tqdm on a terminal, a plain line every few seconds in a log."""

import io
import subprocess
import sys

from tqdm import tqdm

from core.progress import LineProgress, progress_bar


def test_training_progress_in_a_log_file_is_a_few_plain_lines(tmp_path):
    """Where stderr is a file or a pipe, progress is a plain line every LINE_SECONDS (here 0.5 s) instead of tqdm's
    carriage-return redraws (a 60-s training wrote 87 kB of those into a log)."""
    log = tmp_path / "train.log"
    code = (
        "import sys; import core.progress; core.progress.LINE_SECONDS = 0.5; from core.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    argv = ["train", "--time-budget", "3", "--batch-size", "16", "--device", "cpu", "--num-threads", "1"]
    with log.open("w") as stderr:
        result = subprocess.run(
            [sys.executable, "-c", code, *argv, "--out", str(tmp_path / "ckpt")], stderr=stderr, timeout=300
        )
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text and len(text.encode()) < 2000, text
    progress = [line for line in text.splitlines() if line.startswith("step ")]
    assert len(progress) >= 3, text  # one every 0.5 s of a 3-s run, and the last
    assert all(f in progress[-1] for f in ("loss=", "img_s=", "elapsed", "left")), progress[-1]


def test_progress_is_tqdm_on_a_terminal_and_lines_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_bar(10, stream=Terminal()), tqdm)
    lines = io.StringIO()
    bar = progress_bar(10, initial=2, stream=lines)
    assert isinstance(bar, LineProgress)
    bar.set_postfix(loss="0.1000")
    bar.update(3)  # within LINE_SECONDS of the start: no line yet
    assert lines.getvalue() == ""
    bar.close()  # the last line
    assert lines.getvalue().startswith("step 5/10, loss=0.1000, 0:00 elapsed, 0:00 left\n")
