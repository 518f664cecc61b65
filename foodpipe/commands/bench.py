"""The benchmarks behind ``foodpipe bench``:

- ``preprocess --input URI``: the Beam job (default runner) against a plain single-process loop
  doing the same work on the same input, each in its own process, timed from start to exit, with
  the peak memory of its whole process tree (Beam's workers included; the driver's and the
  workers' apart) and the job's stage timeline. The input is read once before either is timed, so
  that both start from the same warm cache (otherwise whichever runs first pays for reading a cold
  disk). It runs in bounded memory at any input size: files are read and compared in chunks;
- ``input --data URI``: the input pipelines (``tfdata/bench.py``);
- ``train --data URI``: training steps on real against cached input (``trainer/bench.py``).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from foodpipe import datasets, process, schema, storage
from foodpipe.errors import FoodpipeError


CHUNK = 8 << 20
WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"  # what each DirectRunner worker process runs


def workers_rss(processes: list[dict]) -> dict[int, int]:
    """RSS by pid of the Beam worker processes among a job's descendants (each a dict of psutil's
    ``pid``, ``ppid``, ``status``, ``cmdline``, ``rss``): the processes running ``WORKER_MAIN``.
    Left out: the shells the DirectRunner starts them through, a process that has ended (a zombie
    holds no memory), and the helpers the driver and the workers start (a helper caught between
    its fork and its exec still shows its parent's command line, a worker's among them)."""
    running = {p["pid"]: p for p in processes if p["status"] != "zombie" and WORKER_MAIN in (p["cmdline"] or [])}
    return {pid: p["rss"] for pid, p in running.items() if p["ppid"] not in running}


def measure(args: list[str]) -> dict:
    """Run a command; return wall seconds, its start and end on the wall clock, and peak RSS: of it
    and its workers summed, of the process itself (the driver), of its workers summed, each at its
    own peak, and of each worker apart (largest first). Workers are told apart by ``workers_rss``."""
    import psutil

    started, started_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, each = {"total": 0, "driver": 0, "workers": 0}, {}
    done = threading.Event()

    def described(p) -> dict:
        try:
            with p.oneshot():
                return {"pid": p.pid, "ppid": p.ppid(), "status": p.status(), "cmdline": p.cmdline(),
                        "rss": p.memory_info().rss}
        except psutil.Error:  # gone, or a zombie, between the listing and this
            return {"pid": p.pid, "ppid": None, "status": "zombie", "cmdline": None, "rss": 0}

    def sample():
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                driver = parent.memory_info().rss
                children = workers_rss([described(p) for p in parent.children(recursive=True)])
                workers = sum(children.values())
                for key, value in (("total", driver + workers), ("driver", driver), ("workers", workers)):
                    peak[key] = max(peak[key], value)
                for pid, value in children.items():
                    each[pid] = max(each.get(pid, 0), value)
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds, ended_wall = time.monotonic() - started, time.time()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        said = stderr.strip().splitlines()[-1].removeprefix(f"{process.PREFIX} ") if stderr.strip() else proc.returncode
        raise FoodpipeError(f"{args[2]} failed: {said}")
    return {"seconds": seconds, "started": started_wall, "ended": ended_wall, "stdout": stdout, "stderr": stderr,
            **{f"{key}_peak_rss_mb": value / 2**20 for key, value in peak.items()},
            "each_worker_peak_rss_mb": sorted((value / 2**20 for value in each.values()), reverse=True)}


def own_peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``: of its own address space; ``ru_maxrss`` would carry over
    the peak of the process that started it, across exec)."""
    import psutil

    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(psutil.Process().memory_info().rss / 2**20, 1)  # no /proc: the current RSS, a lower bound


def file_digest(path: str) -> str:
    """SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def same_output(first: str, second: str) -> bool:
    """Whether the two local folders hold the same shards and manifest, byte for byte (compared by
    digest, one file at a time in chunks: a dataset of any size in bounded memory)."""
    def digests(folder: str) -> dict[str, str]:
        return {os.path.basename(path): file_digest(path) for path in storage.list_files(folder, recursive=False)
                if path.endswith((schema.SHARD_SUFFIX, schema.MANIFEST_FILE))}

    return digests(first) == digests(second)


def stage_seconds(run: dict, timeline: dict) -> dict:
    """The job's wall time by stage, from its own timeline (``metadata.json``'s ``job.timeline``,
    seconds from the job's start) and the process's start and end: imports and start-up before the
    job, listing and planning, up to the first image validated, validation (each image read,
    validated and written into its shard), the rest of the graph (gathering the shards' facts, the
    dataset files), and the commit and exit. Without the
    workers' progress (workers on other hosts) the middle three are one ``graph`` stage."""
    start, end = timeline["started"] - run["started"], run["ended"] - timeline["started"]
    stages = {"start_up": start, "planning": timeline["planned_s"]}
    if "first_image_s" in timeline:
        stages.update(to_first_image=timeline["first_image_s"] - timeline["planned_s"],
                      validation=timeline["last_image_s"] - timeline["first_image_s"],
                      after_validation=timeline["graph_done_s"] - timeline["last_image_s"])
    else:
        stages["graph"] = timeline["graph_done_s"] - timeline["planned_s"]
    stages["commit_and_exit"] = end - timeline["graph_done_s"]
    return {name: round(seconds, 2) for name, seconds in stages.items()}


# The job's last progress line (beam_pipelines.progress.Progress), on runners whose workers share this host.
SHARED = re.compile(r"by (\d+) worker processes \(([\d, ]+)\); ([\d.]+) s from the first image to the last")


def work_figures(job_stderr: str, images: int, seconds: float) -> dict:
    """Per-worker and steady-state figures from the job's last progress line: the rate from the
    first image validated to the last, and the rest of the wall time (the fixed cost)."""
    found = SHARED.findall(job_stderr)
    if not found:
        return {}
    workers, counts, span = found[-1]
    span = float(span)
    return {"workers": int(workers), "worker_shares": [int(n) for n in counts.split(", ")],
            "beam_steady_img_per_s": round(images / max(span, 1e-9), 1),
            "beam_steady_img_per_s_per_worker": round(images / max(span, 1e-9) / int(workers), 1),
            "beam_fixed_seconds": round(seconds - span, 2)}


def warm_input(input_uri: str, settings) -> int:
    """Read every file under ``input_uri`` once (a local file in chunks, an object whole: objects
    are single images); returns the bytes read."""
    total = 0
    for path in storage.list_files(input_uri, settings):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    total += len(block)
        else:
            total += len(storage.read(path, settings))
    return total


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2]


def bench_preprocess(input_uri: str, extra: list[str], runner_flags: list[str] = (),
                     settings=None, repeats: int = 1) -> dict:
    """``extra``: flags for both (``--s3-endpoint``, the split's); ``runner_flags``: Beam flags for the job alone.
    With ``repeats`` > 1 the job and the loop run that many times, alternately (a drift of the machine
    touches both alike), each into an empty output (replacing the last run's 5 GB dataset cost the
    job's commit ~1 s at 101,000 images), and the figures are each one's median run's."""
    if repeats < 1:
        raise FoodpipeError(f"--repeats must be at least 1, got {repeats}")
    storage.check_folder(input_uri, f"reading {input_uri}", settings)
    warm_input(input_uri, settings)
    with tempfile.TemporaryDirectory(prefix="foodpipe-bench-") as tmp:
        beam_out, loop_out = os.path.join(tmp, "beam"), os.path.join(tmp, "loop")
        job = [sys.executable, "-m", "beam_pipelines.preprocess", "--input", input_uri, "--output", beam_out, *extra,
               *runner_flags]
        loop = [sys.executable, "-m", "beam_pipelines.single_process", "--input", input_uri, "--output", loop_out,
                *extra]
        beam_runs, loop_runs = [], []
        for _ in range(repeats):
            for folder in (beam_out, loop_out):  # each run writes a new dataset, as the first does
                shutil.rmtree(folder, ignore_errors=True)
            beam_runs.append(measure(job))
            beam_runs[-1]["job"] = datasets.load_metadata(beam_out)["job"]
            loop_runs.append(measure(loop))
        beam_run, loop_run = median_run(beam_runs), median_run(loop_runs)
        metadata = datasets.load_metadata(beam_out)
        images = metadata["images"] + metadata["rejected"]
        result = {
            "images": images,
            "cores": os.cpu_count(),
            "runner": metadata["job"]["runner"],
            "beam_seconds": round(beam_run["seconds"], 2),
            "single_loop_seconds": round(loop_run["seconds"], 2),
            "beam_img_per_s": round(images / beam_run["seconds"], 1),
            "single_loop_img_per_s": round(images / loop_run["seconds"], 1),
            "beam_vs_single_loop": round(loop_run["seconds"] / beam_run["seconds"], 3),
            "beam_peak_rss_mb": round(beam_run["total_peak_rss_mb"], 1),
            "beam_driver_peak_rss_mb": round(beam_run["driver_peak_rss_mb"], 1),
            "beam_workers_peak_rss_mb": round(beam_run["workers_peak_rss_mb"], 1),
            "beam_each_worker_peak_rss_mb": [round(value, 1) for value in beam_run["each_worker_peak_rss_mb"]],
            "single_loop_peak_rss_mb": round(loop_run["total_peak_rss_mb"], 1),
            "beam_stage_seconds": stage_seconds(beam_run, beam_run["job"]["timeline"]),
            "shard_writer_shares": beam_run["job"]["shard_writers"],
            "same_output": same_output(beam_out, loop_out),
            **work_figures(beam_run["stderr"], images, beam_run["seconds"]),
        }
        result["bench_process_peak_rss_mb"] = own_peak_rss_mb()
        if repeats > 1:
            result["beam_seconds_each"] = [round(run["seconds"], 2) for run in beam_runs]
            result["single_loop_seconds_each"] = [round(run["seconds"], 2) for run in loop_runs]
    return result


def print_table(result: dict) -> dict:
    """``result`` as two aligned columns (its ``rows``, if any, as a table of their own); returns it."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key != "rows":
            print(f"{key:<{width}}  {value}")
    if result.get("rows"):
        process.print_rows([{"row": name, **{key: str(value) for key, value in row.items()}}  # as rounded
                            for name, row in result["rows"].items()])
    return result


def bench_input(data: str, image_size: int, batch_size: int, images: int, seed_images: int,
                input_service: str | None = None) -> dict:
    from tfdata import bench
    from tfdata.config import InputConfig

    # Every augmentation on, whatever the trainer's defaults: the benchmark times the costliest train view.
    config = InputConfig(image_size=image_size, batch_size=batch_size, flip=True, rotate_degrees=15.0,
                         brightness_contrast=0.2, noise_std=8.0, blur=True)
    return bench.run(data, config, images=images, seed_images=seed_images, input_service=input_service)


def bench_train(data: str, model: str, image_size: int, batch_size: int, steps: int, mixed_precision: bool,
                jit_compile: bool) -> dict:
    from foodpipe.config import from_flat
    from trainer import bench
    from trainer.config import TrainConfig

    train_config = from_flat(TrainConfig, dict(data=data, model=model, image_size=image_size, batch_size=batch_size,
                                               weights="none", mixed_precision=mixed_precision,
                                               jit_compile=jit_compile))
    return bench.run(train_config, steps=steps)
