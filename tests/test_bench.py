"""The benchmarks run on tiny data for the shape of their report, never for their speed."""

import json
import os

import pytest

from foodpipe.commands import bench
from tests.conftest import foodpipe

pytestmark = pytest.mark.slow


def test_only_the_beam_worker_processes_count_as_workers():
    """What a sample of the job's process tree can catch: the shells the workers start through, a
    helper (``ldconfig``) before and after its exec, a worker ended but not yet reaped."""
    driver, worker = ["python", "-m", "beam_pipelines.preprocess"], ["python", "-m", bench.WORKER_MAIN]
    tree = [dict(pid=11, ppid=1, status="sleeping", cmdline=["/bin/sh", "-c", " ".join(worker)], rss=1),
            dict(pid=12, ppid=11, status="running", cmdline=worker, rss=200),
            dict(pid=13, ppid=1, status="sleeping", cmdline=worker, rss=190),
            dict(pid=14, ppid=1, status="running", cmdline=driver, rss=300),  # forked, not yet exec'd
            dict(pid=15, ppid=13, status="running", cmdline=worker, rss=190),  # the same in a worker
            dict(pid=16, ppid=12, status="running", cmdline=["/sbin/ldconfig", "-p"], rss=2),
            dict(pid=17, ppid=1, status="zombie", cmdline=None, rss=0),
            dict(pid=18, ppid=1, status="zombie", cmdline=worker, rss=0)]
    assert bench.workers_rss(tree) == {12: 200, 13: 190}


def test_bench_preprocess_reports_every_figure(raw_dataset, tmp_path):
    report = tmp_path / "bench.json"
    result = foodpipe("bench", "preprocess", "--input", raw_dataset, "--repeats", "2", "--json", str(report))
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    for key in ("beam_img_per_s", "single_loop_img_per_s", "beam_vs_single_loop", "beam_peak_rss_mb",
                "single_loop_peak_rss_mb"):
        assert figures[key] > 0, key
        assert key in result.stdout
    assert figures["images"] == 51 and figures["cores"] >= 1 and figures["runner"] == "DirectRunner"
    assert figures["same_output"] is True  # the loop is a faithful peer: identical shards and manifest
    # Read apart: the rate from the first image to the last, per worker, and the fixed cost.
    assert figures["workers"] == len(figures["worker_shares"]) >= 1 and sum(figures["worker_shares"]) == 51
    assert figures["beam_steady_img_per_s"] >= figures["beam_img_per_s"] > 0
    assert 0 < figures["beam_fixed_seconds"] < figures["beam_seconds"]
    # Memory of the driver and of its worker processes apart; each peaks on its own.
    assert figures["beam_driver_peak_rss_mb"] > 50 and figures["beam_workers_peak_rss_mb"] > 50
    assert max(figures["beam_driver_peak_rss_mb"], figures["beam_workers_peak_rss_mb"]) <= \
        figures["beam_peak_rss_mb"] <= figures["beam_driver_peak_rss_mb"] + figures["beam_workers_peak_rss_mb"] + 0.2
    # And each worker's apart: one figure per validating worker process (their shells left out).
    each = figures["beam_each_worker_peak_rss_mb"]
    assert len(each) == figures["workers"] and all(50 < mb <= figures["beam_workers_peak_rss_mb"] + 0.1 for mb in each)
    assert sum(each) >= figures["beam_workers_peak_rss_mb"] - 0.2
    assert sum(figures["shard_writer_shares"]) == 3  # one shard per split, each written by one worker process
    assert 0 < figures["bench_process_peak_rss_mb"] < 1024  # its own, apart from the processes it measured
    # The stages add up to the run's wall time.
    stages = figures["beam_stage_seconds"]
    assert list(stages) == ["start_up", "planning", "to_first_image", "validation", "after_validation",
                            "commit_and_exit"]
    assert min(stages.values()) >= 0 and sum(stages.values()) == pytest.approx(figures["beam_seconds"], abs=0.1)
    # Two runs each, alternated; the figures are the median (of two: the faster) run's.
    assert len(figures["beam_seconds_each"]) == len(figures["single_loop_seconds_each"]) == 2
    assert figures["beam_seconds"] == min(figures["beam_seconds_each"])
    assert figures["single_loop_seconds"] == min(figures["single_loop_seconds_each"])


def test_every_repeat_writes_into_an_empty_output(trainer_dataset, monkeypatch):
    """With ``--repeats``, the job and the loop each write a new dataset every time, as the first run
    does, instead of replacing the last run's (which costs the job's commit a delete)."""
    import shutil
    import time

    found = []

    def fake_measure(command):  # stands for a run: checks its output is empty, then "writes" it
        output = command[command.index("--output") + 1]
        found.append(os.path.exists(output))
        shutil.copytree(trainer_dataset, output, dirs_exist_ok=True)
        now = time.time()
        return {"seconds": 1.0, "started": now - 1, "ended": now, "total_peak_rss_mb": 1.0, "driver_peak_rss_mb": 1.0,
                "workers_peak_rss_mb": 0.0, "each_worker_peak_rss_mb": [], "stderr": ""}

    monkeypatch.setattr(bench, "measure", fake_measure)
    result = bench.bench_preprocess(trainer_dataset, [], repeats=3)
    assert found == [False] * 6 and result["same_output"] is True


def test_bench_needs_an_input(tmp_path):
    result = foodpipe("bench", "preprocess")
    assert result.returncode == 2 and "the following arguments are required: --input" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("foodpipe: error:")
    result = foodpipe("bench", "preprocess", "--input", "/no/matter", "--repeats", "0")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "foodpipe: error: --repeats must be at least 1, got 0"]
    result = foodpipe("bench", "preprocess", "--input", "/no/such/input")  # checked before either run
    assert result.returncode == 2 and result.stderr.strip() == "foodpipe: error: folder does not exist: /no/such/input"
    (tmp_path / "images" / "pizza").mkdir(parents=True)
    result = foodpipe("bench", "preprocess", "--input", str(tmp_path))  # the job's own error, said once
    assert result.returncode == 2 and result.stderr.strip().startswith(
        "foodpipe: error: beam_pipelines.preprocess failed: no images found") and result.stderr.count("error:") == 1


INPUT_KEYS = ("decode_only_img_per_s", "train_pipeline_img_per_s", "eval_pipeline_img_per_s",
              "decode_only_img_per_s_per_core", "train_pipeline_img_per_s_per_core",
              "seed_sequence_img_per_s", "train_vs_decode_only", "train_vs_seed_sequence", "s3_vs_local",
              "pure_tf_img_per_s", "train_vs_pure_tf",
              "scale_numba_vs_numpy")


def test_bench_input_on_s3_reports_every_figure(raw_on_s3, s3_env, input_service, tmp_path):
    """Reads s3:// through tensorflow-io and the seed baseline GETs raw images with minio; the
    command exits 0 although tensorflow-io aborts at interpreter exit. The service row's workers
    read the same s3:// shards with the S3 settings of their own environment."""
    made = foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/bench",
                    "--shard-size-mb", "0.3", env=s3_env)
    assert made.returncode == 0, made.stderr
    report = tmp_path / "input.json"
    result = foodpipe("bench", "input", "--data", "s3://datasets/bench", "--image-size", "64", "--batch-size", "8",
                      "--images", "32", "--seed-images", "16", "--input-service", input_service.address,
                      "--json", str(report), env=s3_env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    for key in INPUT_KEYS:
        assert figures[key] > 0, key
        assert key in result.stdout
    assert (figures["image_size"], figures["batch_size"], figures["cores"]) == (64, 8, __import__("os").cpu_count())
    assert set(figures["rows"]) == {"local", "service", "pure_tf", "seed_sequence"}
    assert figures["service_vs_local"] > 0 and figures["service_cpu_vs_local"] > 0
    for name, row in figures["rows"].items():
        assert row["img_per_s"] > 0 and row["cpu_s_per_img"] > 0, name
        assert name in result.stdout  # the rows' table
    assert figures["rows"]["local"]["img_per_s"] == pytest.approx(figures["train_pipeline_img_per_s"], rel=0.01)


def test_bench_input_names_a_missing_dataset(tmp_path):
    result = foodpipe("bench", "input", "--data", str(tmp_path))
    assert result.returncode == 2 and "dataset incomplete" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_train_compares_real_input_with_cached_batches(raw_dataset, tmp_path):
    data, report = str(tmp_path / "data"), tmp_path / "train.json"
    assert foodpipe("preprocess", "--input", raw_dataset, "--output", data).returncode == 0
    result = foodpipe("bench", "train", "--data", data, "--image-size", "32", "--batch-size", "8", "--steps", "3",
                      "--json", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(report.read_text())
    assert figures["real_input_img_per_s"] > 0 and figures["cached_input_img_per_s"] > 0
    assert figures["input_bound_ratio"] == pytest.approx(
        figures["real_input_img_per_s"] / figures["cached_input_img_per_s"], rel=0.01)
    assert "input_bound_ratio" in result.stdout and figures["steps"] == 3


def test_same_output_compares_every_shard_and_the_manifest_by_content(tmp_path):
    from foodpipe.commands import bench

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for file, body in (("train-00000-of-00001.tfrecord", b"x" * (bench.CHUNK + 5)), ("manifest.parquet", b"m"),
                           ("metadata.json", name.encode())):  # metadata.json differs (its timings): not compared
            (tmp_path / name / file).write_bytes(body)
    assert bench.same_output(str(tmp_path / "a"), str(tmp_path / "b"))
    (tmp_path / "b" / "train-00000-of-00001.tfrecord").write_bytes(b"x" * bench.CHUNK + b"y" * 5)  # past a chunk
    assert not bench.same_output(str(tmp_path / "a"), str(tmp_path / "b"))
    (tmp_path / "b" / "train-00000-of-00001.tfrecord").write_bytes(b"x" * (bench.CHUNK + 5))
    (tmp_path / "b" / "val-00000-of-00001.tfrecord").write_bytes(b"")
    assert not bench.same_output(str(tmp_path / "a"), str(tmp_path / "b"))
