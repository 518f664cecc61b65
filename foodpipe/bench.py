"""The benchmarks behind ``foodpipe bench``:

- ``preprocess --input URI``: the Beam job (default runner) against a plain single-process loop
  doing the same work on the same input, each in its own process, timed from start to exit, with
  the peak memory of its whole process tree (Beam's workers included). The input is read once
  before either is timed, so that both start from the same warm cache (otherwise whichever runs
  first pays for reading a cold disk);
- ``input --data URI``: the input pipelines (``tfdata/bench.py``);
- ``train --data URI``: training steps on real against cached input (``trainer/bench.py``).
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from foodpipe import datasets, schema, storage
from foodpipe.errors import FoodpipeError


def measure(args: list[str]) -> dict:
    """Run a command; return wall seconds and the peak summed RSS of it and its children."""
    import psutil

    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [parent] + parent.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise FoodpipeError(f"{args[2]} failed: {stderr.strip().splitlines()[-1] if stderr.strip() else proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": peak / 2**20, "stdout": stdout, "stderr": stderr}


def same_output(first: str, second: str) -> bool:
    """Whether the two folders hold the same shards and manifest, byte for byte."""
    def contents(folder: str) -> dict[str, bytes]:
        return {os.path.basename(path): storage.read(path) for path in storage.list_files(folder, recursive=False)
                if path.endswith((schema.SHARD_SUFFIX, schema.MANIFEST_FILE))}

    return contents(first) == contents(second)


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
    """Read every file under ``input_uri`` once; returns the bytes read."""
    return sum(len(storage.read(path, settings)) for path in storage.list_files(input_uri, settings))


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2]


def bench_preprocess(input_uri: str, extra: list[str], runner_flags: list[str] = (),
                     settings=None, repeats: int = 1) -> dict:
    """``extra``: flags for both (``--s3-endpoint``, the split's); ``runner_flags``: Beam flags for the job alone.
    With ``repeats`` > 1 the job and the loop run that many times, alternately (so a drift of the
    machine touches both alike), and the figures are each one's median run's."""
    if repeats < 1:
        raise FoodpipeError(f"--repeats must be at least 1, got {repeats}")
    warm_input(input_uri, settings)
    with tempfile.TemporaryDirectory(prefix="foodpipe-bench-") as tmp:
        beam_out, loop_out = os.path.join(tmp, "beam"), os.path.join(tmp, "loop")
        job = [sys.executable, "-m", "beam_pipelines.preprocess", "--input", input_uri, "--output", beam_out, *extra,
               *runner_flags]
        loop = [sys.executable, "-m", "beam_pipelines.single_process", "--input", input_uri, "--output", loop_out,
                *extra]
        beam_runs, loop_runs = [], []
        for _ in range(repeats):
            beam_runs.append(measure(job))
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
            "beam_peak_rss_mb": round(beam_run["peak_rss_mb"], 1),
            "single_loop_peak_rss_mb": round(loop_run["peak_rss_mb"], 1),
            "same_output": same_output(beam_out, loop_out),
            **work_figures(beam_run["stderr"], images, beam_run["seconds"]),
        }
        if repeats > 1:
            result["beam_seconds_each"] = [round(run["seconds"], 2) for run in beam_runs]
            result["single_loop_seconds_each"] = [round(run["seconds"], 2) for run in loop_runs]
    return result


def print_table(result: dict) -> dict:
    """``result`` as two aligned columns; returns it."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    return result


def bench_input(data: str, image_size: int, batch_size: int, images: int, seed_images: int) -> dict:
    from tfdata import bench
    from tfdata.config import InputConfig

    # Every augmentation on, whatever the trainer's defaults: the benchmark times the costliest train view.
    config = InputConfig(image_size=image_size, batch_size=batch_size, flip=True, rotate_degrees=15.0,
                         brightness_contrast=0.2, noise_std=8.0, blur=True)
    return bench.run(data, config, images=images, seed_images=seed_images)


def bench_train(data: str, model: str, image_size: int, batch_size: int, steps: int, mixed_precision: bool,
                jit_compile: bool) -> dict:
    from trainer import bench, config

    train_config = config.TrainConfig(data=data, model=model, image_size=image_size, batch_size=batch_size,
                                      weights=None, mixed_precision=mixed_precision, jit_compile=jit_compile)
    return bench.run(train_config, steps=steps)
