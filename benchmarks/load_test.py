"""Load test: `python app.py` in its own process, driven by N concurrent gradio_client clients on loopback.

    python benchmarks/load_test.py                      # 1, 8, then 16 clients for 60 s: a quarter train
    python benchmarks/load_test.py --clients 24 --seconds 120 --no-write
    python benchmarks/load_test.py --burst              # the classroom burst: 30 users press Sample at once

Each client is a separate user (its own session). Training clients start 10-second live trainings, sampling clients
the Sample tab's default run (16 digits, DDIM 50); between heavy requests every client also asks for the Schedules
tab's figures (a light request, which should stay quick while the heavy ones queue). Clients submit only during
the window (--seconds); requests already sent are then awaited (at most --drain seconds). Nothing leaves
127.0.0.1, and the server runs with its shipped limits (2 active and 8 waiting runs of each kind, Gradio's queue of 64).

Reported: requests per kind, completed, refused (with the server's message: "the server is full ... try again"),
other errors, latency percentiles of completed requests (queue time included; clients do not download the
pictures, so that the harness takes little of the cores it shares with the server), the server's resident memory
(idle, after warm-up, peak, at the end: read from /proc/<pid>/status, Linux only), and whether the server was still
alive and serving afterwards. The table goes to RESULTS.md ("Load test").

--burst: the classroom burst (`classroom_burst`). One fresh server; the lone time of the default sample first (the
Sample tab's defaults on the default model, median of 3); then N users (30) who all press Sample with those defaults
at the same moment (each on the Sample tab already: their page asked for the model's settings), each with their own
seed; then all with the same seed; then the burst while 2 live trainings
run (started 3 s before it), and the burst with 2 trainings started 0.5 s into it (their click-to-first-loss-point
time is the training's share). Every answer is awaited; table to RESULTS.md ("Classroom burst").
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import (
    busy_warning,
    command_line,
    machine_description,
    section_header,
    start_server,
    stop_server,
    write_section,
)
from gradio_client import Client

from core.device import available_cores
from explorer.models import DEFAULT_MODEL

SECTION_HEADING = "## Load test (benchmarks/load_test.py)"
BURST_HEADING = "## Classroom burst (benchmarks/load_test.py --burst)"
REFUSAL = re.compile(r"server is full|try again|queue is full", re.IGNORECASE)


@dataclass
class Outcome:
    kind: str  # "sample", "train" or "figures"
    client: int
    seconds: float
    result: str  # "completed", "refused" or "error"
    message: str = ""


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/<pid>/status in MB (VmRSS: resident now; VmHWM: the resident peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


class MemoryWatch(threading.Thread):
    """Samples a process's resident memory every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append(memory_mb(self.pid))
            except (OSError, KeyError):
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def heavy_call(client: Client, kind: str, train_seconds: int) -> None:
    if kind == "train":
        status = client.predict(
            api_name="/train", upload=None, length_unit="seconds", length=train_seconds, batch_size=64
        )[0]
        if "Finished" not in status:
            raise RuntimeError(f"training ended with: {status}")
    else:
        progress = client.predict(DEFAULT_MODEL, "DDIM", 50, 1.0, 0, 16, None, 1.0, api_name="/sample")[0]
        if "50 of 50" not in progress:
            raise RuntimeError(f"sampling ended with: {progress[:200]}")


def light_call(client: Client) -> None:
    client.predict(api_name="/schedule_figures")


def timed(kind: str, index: int, call) -> Outcome:
    start = time.perf_counter()
    try:
        call()
    except Exception as error:  # gradio_client raises the server's gr.Error message as AppError
        message = " ".join(str(error).split())[:300]
        result = "refused" if REFUSAL.search(message) else "error"
        return Outcome(kind, index, time.perf_counter() - start, result, message)
    return Outcome(kind, index, time.perf_counter() - start, "completed")


def client_loop(url: str, index: int, kind: str, until: float, train_seconds: int, outcomes: list[Outcome]) -> None:
    """One user: alternate a heavy request of its kind and a light one until the window closes."""
    client = Client(url, verbose=False, download_files=False)
    while time.monotonic() < until:
        outcomes.append(timed(kind, index, lambda: heavy_call(client, kind, train_seconds)))
        if outcomes[-1].result == "refused":
            time.sleep(2.0)  # as told: try again a little later
        if time.monotonic() < until:
            outcomes.append(timed("figures", index, lambda: light_call(client)))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(clients: int, seconds: float, train_share: float, train_seconds: int, drain: float) -> dict:
    server, url, startup = start_server()
    try:
        idle = memory_mb(server.pid)
        warm = Client(url, verbose=False, download_files=False)
        heavy_call(warm, "sample", train_seconds)  # load the pretrained model once, as the first visitor does
        light_call(warm)
        warmed = memory_mb(server.pid)
        watch = MemoryWatch(server.pid)
        watch.start()
        trainers = round(clients * train_share)
        kinds = ["train"] * trainers + ["sample"] * (clients - trainers)
        outcomes: list[Outcome] = []
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=client_loop, args=(url, i, kind, until, train_seconds, outcomes), daemon=True)
            for i, kind in enumerate(kinds)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, seconds + drain - (time.perf_counter() - began)))
        stragglers = sum(thread.is_alive() for thread in threads)
        elapsed = time.perf_counter() - began
        watch.stop()
        alive = server.poll() is None
        health = (
            timed("figures", -1, lambda: light_call(Client(url, verbose=False, download_files=False)))
            if alive
            else None
        )
        return {
            "clients": clients,
            "trainers": trainers,
            "seconds": seconds,
            "elapsed": elapsed,
            "startup": startup,
            "outcomes": list(outcomes),
            "stragglers": stragglers,
            "memory": {
                "idle": idle,
                "warmed": warmed,
                "peak": max([warmed, *watch.samples, memory_mb(server.pid, "VmHWM")]) if alive else max(watch.samples),
                "end": memory_mb(server.pid) if alive else float("nan"),
            },
            "alive": alive,
            "health": health,
        }
    finally:
        stop_server(server)


def report(results: list[dict], train_seconds: int) -> list[str]:
    """The section's tables: one row per (client count, request kind), then memory and refusals per run."""
    first = results[0]
    lines = [
        f"Each run: a fresh `python app.py` with its shipped limits (2 active and 8 waiting runs of each kind: "
        f"training, sampling); a quarter of "
        f"the clients train ({train_seconds}-s live runs), the others sample, and every one asks for the Schedules "
        f"figures between heavy requests; they submit for {first['seconds']:.0f} s and the answers to what was "
        "sent are awaited. Latencies are from the client's call to its answer (queueing included).",
        "",
        "| clients | request | sent | completed | refused | errors | p50 s | p95 s | max s | p50 / one client's |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    alone = next((r for r in results if r["clients"] == 1), None)
    alone_p50 = (
        {
            kind: percentile([o.seconds for o in alone["outcomes"] if o.kind == kind and o.result == "completed"], 50)
            for kind in ("sample", "train", "figures")
        }
        if alone
        else {}
    )
    names = {"sample": "sample (16 digits, DDIM 50)", "train": f"train ({train_seconds} s live)", "figures": "figures"}
    for result in results:
        for kind in ("sample", "train", "figures"):
            mine = [o for o in result["outcomes"] if o.kind == kind]
            if not mine:
                continue
            done = [o.seconds for o in mine if o.result == "completed"]
            ratio = percentile(done, 50) / alone_p50.get(kind, math.nan)
            count = collections.Counter(o.result for o in mine)
            lines.append(
                f"| {result['clients']} | {names[kind]} | {len(mine)} | {count['completed']} | {count['refused']} | "
                f"{count['error']} | {percentile(done, 50):.2f} | {percentile(done, 95):.2f} | "
                f"{max(done, default=float('nan')):.2f} | {'-' if math.isnan(ratio) else f'{ratio:.1f}x'} |"
            )
    lines += [
        "",
        "| clients | server resident MB: idle | after first sample | peak | end | all answered after s | "
        "server alive, then a new user's figures in s |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        memory, health = result["memory"], result["health"]
        alive = f"yes, {health.seconds:.2f} ({health.result})" if health else "NO (crashed)"
        lines.append(
            f"| {result['clients']} | {memory['idle']:.0f} | {memory['warmed']:.0f} | {memory['peak']:.0f} | "
            f"{memory['end']:.0f} | {result['elapsed']:.0f} ({result['stragglers']} unanswered) | {alive} |"
        )
    lines.append("")
    for result in results:
        outcomes = result["outcomes"]
        refusals = collections.Counter(re.sub(r"\d+", "N", o.message) for o in outcomes if o.result == "refused")
        errors = collections.Counter(o.message for o in outcomes if o.result == "error")
        waits = [o.seconds for o in outcomes if o.result == "refused"]
        for message, n in refusals.most_common():
            lines.append(
                f"- {result['clients']} clients, refused {n}x (answered in {statistics.median(waits):.2f} s, median): "
                f'"{message}"'
            )
        for message, n in errors.most_common():
            lines.append(f'- {result["clients"]} clients, ERROR {n}x: "{message}"')
        if not refusals and not errors:
            lines.append(f"- {result['clients']} clients: no refusals, no errors.")
    return lines


def default_sample(seed: int) -> tuple:
    """The /sample arguments of the Sample tab's defaults (the default model's recorded sampler, steps, eta and
    spacing; 16 pictures) with this seed."""
    from explorer.models import pretrained
    from explorer.sampling_run import SAMPLER_LABELS
    from explorer.tabs.sample import DEFAULT_IMAGES

    defaults = pretrained(DEFAULT_MODEL).sampling_defaults
    label = SAMPLER_LABELS[defaults.sampler]
    return DEFAULT_MODEL, label, defaults.steps, defaults.eta, seed, DEFAULT_IMAGES, None, 1.0, defaults.spacing


def sample_once(client: Client, seed: int) -> float:
    """One default sample through the API; its wall seconds (RuntimeError unless it finished)."""
    arguments = default_sample(seed)
    start = time.perf_counter()
    progress = client.predict(*arguments, api_name="/sample")[0]
    if f"{arguments[2]} of {arguments[2]}" not in progress:
        raise RuntimeError(f"sampling ended with: {progress[:200]}")
    return time.perf_counter() - start


def first_loss_point(client: Client, seconds: int) -> float:
    """Start a live training of `seconds` and return the seconds from the click to its first loss point (the
    status line's "loss"); the training then runs on to its end in the background."""
    start = time.perf_counter()
    job = client.submit(upload=None, length_unit="seconds", length=seconds, batch_size=64, api_name="/train")
    while True:
        if any("; loss " in str(output[0]) for output in job.outputs()):
            return time.perf_counter() - start
        if job.done():
            raise RuntimeError(f"training ended without a loss point: {job.outputs()[-1:]!r}")
        time.sleep(0.02)


def burst_scenario(url: str, pid: int, size: int, seeds: list[int], trainings: int, offset: float) -> dict:
    """`size` users press Sample at the same moment (seeds[i] each); with `trainings` live trainings started
    `offset` seconds relative to that moment (negative: before). Latencies, outcomes, memory, first loss points."""
    clients = [Client(url, verbose=False, download_files=False) for _ in range(size + trainings)]
    for client in clients:  # each student has the Sample tab open: the page asked for the model's settings
        client.predict(DEFAULT_MODEL, api_name="/describe_model")
    outcomes: list[Outcome] = [None] * size  # type: ignore[list-item]
    losses: list[float] = []
    go = threading.Barrier(size + 1)
    watch = MemoryWatch(pid, interval=0.05)
    watch.start()

    def student(i: int) -> None:
        go.wait()
        outcomes[i] = timed("sample", i, lambda: sample_once(clients[i], seeds[i]))

    def trainer(i: int) -> None:
        losses.append(first_loss_point(clients[size + i], 30))

    train_threads = [threading.Thread(target=trainer, args=(i,), daemon=True) for i in range(trainings)]
    if offset < 0:
        for thread in train_threads:
            thread.start()
        for thread in train_threads:
            thread.join(timeout=60)
        time.sleep(-offset)
    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(size)]
    for thread in threads:
        thread.start()
    go.wait()
    if offset >= 0:
        time.sleep(offset)
        for thread in train_threads:
            thread.start()
    for thread in threads + train_threads:
        thread.join(timeout=600)
    watch.stop()
    time.sleep(max(0.0, 31 + min(offset, 0)))  # the trainings (30 s) end before the next scenario
    return {"outcomes": outcomes, "losses": losses, "peak": max(watch.samples)}


SCENARIOS = (  # name, seeds (before each repeat's offset), trainings, their start relative to the burst (s)
    ("own seeds", "own", 0, 0.0),
    ("all the same seed", "same", 0, 0.0),
    ("own seeds, while 2 trainings run", "own", 2, -3.0),
    ("own seeds, 2 trainings started 0.5 s into it", "own", 2, 0.5),
)


def classroom_burst(size: int, repeats: int) -> list[str]:
    """The --burst benchmark (see the module docstring): its table's lines. Each scenario runs `repeats` times on
    fresh seeds (the shared machine is noisy; a seed seen before would come from the server's cache)."""
    server, url, _ = start_server()
    try:
        idle = memory_mb(server.pid)
        client = Client(url, verbose=False, download_files=False)
        sample_once(client, 10_000)  # the first visitor loads the model
        lone = statistics.median(sample_once(client, 10_001 + i) for i in range(3))
        warmed = memory_mb(server.pid)
        results: dict[str, list[dict]] = collections.defaultdict(list)
        for repeat in range(repeats):
            for number, (name, seeds, trainings, offset) in enumerate(SCENARIOS):
                first = 1000 * (repeat * len(SCENARIOS) + number)
                chosen = [first] * size if seeds == "same" else list(range(first, first + size))
                results[name].append(burst_scenario(url, server.pid, size, chosen, trainings, offset))
                print(f"{name}, repeat {repeat + 1}: done", flush=True)
        alive = server.poll() is None
        peak = memory_mb(server.pid, "VmHWM") if alive else float("nan")
        arguments = default_sample(0)
        text = (
            f"The Sample tab's defaults ({arguments[1]}, {arguments[2]} steps, {arguments[8]} spacing, "
            f"{arguments[5]} digits) through the API of one fresh `python app.py` with the limits it ships with "
            f"(explorer/sessions.py). One user alone: **{lone:.2f} s** (median of 3, click "
            f"to pictures). Then {size} users, each with the Sample tab open, press Sample at the same moment (a "
            "barrier); every answer is awaited. Latency: each user's click to their finished run. Each burst ran "
            f"{repeats} times (fresh seeds each time); the median and p95 pool the repeats, 'slowest' lists each "
            "repeat's slowest answer. The clients run on the same 2 cores as the server (a classroom's browsers would "
            "not)."
        )
        lines = [
            text,
            "",
            "| burst | users x repeats | answered | refused | errors | median s | p95 s | slowest s, per repeat | "
            "worst slowest / lone | server MB, peak in the burst | trainings: click to first loss point s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, runs in results.items():
            outcomes = [o for run in runs for o in run["outcomes"] if o is not None]
            done = [o.seconds for o in outcomes if o.result == "completed"]
            count = collections.Counter(o.result for o in outcomes)
            slowest = [
                max((o.seconds for o in run["outcomes"] if o and o.result == "completed"), default=math.nan)
                for run in runs
            ]
            losses = ", ".join(f"{x:.2f}" for run in runs for x in sorted(run["losses"])) or "-"
            lines.append(
                f"| {name} | {size} x {repeats} | {count['completed']} | {count['refused']} | {count['error']} | "
                f"{percentile(done, 50):.2f} | {percentile(done, 95):.2f} | {', '.join(f'{x:.2f}' for x in slowest)} | "
                f"{max(slowest) / lone:.1f}x | {max(run['peak'] for run in runs):.0f} | {losses} |"
            )
        lines += [
            "",
            f"Server resident memory: {idle:.0f} MB idle, {warmed:.0f} MB after the first samples, peak {peak:.0f} MB "
            f"(VmHWM) over all bursts; {'alive' if alive else 'NOT ALIVE'} afterwards.",
        ]
        for name, runs in results.items():
            messages = collections.Counter(
                o.result + ": " + re.sub(r"\d+", "N", o.message)
                for run in runs
                for o in run["outcomes"]
                if o is not None and o.result != "completed"
            )
            for message, n in messages.most_common():
                lines.append(f"- {name}: {n}x {message}")
        return lines
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 8, 16], help="concurrent users, one run each (1: the baseline)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long clients keep submitting")
    parser.add_argument("--train-share", type=float, default=0.25, help="fraction of clients that train")
    parser.add_argument("--train-seconds", type=int, default=10, help="length of each live training")
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait for answers after the window")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    parser.add_argument("--burst", action="store_true", help="the classroom burst instead (see the docstring)")
    parser.add_argument("--burst-size", type=int, default=30, help="users in the classroom burst")
    parser.add_argument("--repeats", type=int, default=3, help="times each classroom burst runs")
    parser.add_argument("--heading", default=BURST_HEADING, help="the RESULTS.md section the burst writes")
    args = parser.parse_args()
    if args.burst:
        warning = busy_warning()
        machine = machine_description(available_cores(), "server and clients on the same machine, loopback")
        lines = section_header(args.heading, machine, command_line(__file__), warning)
        lines += classroom_burst(args.burst_size, args.repeats)
        print("\n".join(lines))
        if not args.no_write:
            write_section(args.heading, "\n".join(lines) + "\n")
        return
    if min(args.clients) < 1 or args.seconds <= 0 or not 0 <= args.train_share <= 1:
        parser.error("need --clients >= 1, --seconds > 0 and --train-share in [0, 1]")
    warning = busy_warning()
    machine = machine_description(available_cores(), "server and clients on the same machine, loopback")
    results = []
    for clients in args.clients:
        results.append(run(clients, args.seconds, args.train_share, args.train_seconds, args.drain))
        print(f"{clients} clients: {len(results[-1]['outcomes'])} requests", flush=True)
    header = section_header(SECTION_HEADING, machine, command_line(__file__), warning)
    lines = header + report(results, args.train_seconds)
    print("\n".join(lines))
    if not args.no_write:
        write_section(SECTION_HEADING, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
