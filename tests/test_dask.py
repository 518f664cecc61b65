"""The same job on a real dask.distributed cluster: a scheduler and two worker processes."""

import json
import os
import re
import socket
import sys

import pytest

from beam_pipelines import options as job_options
from beam_pipelines import preprocess
from foodpipe import schema
from tests.conftest import foodpipe, start_process, stop_process

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster():
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    scheduler, _ = start_process([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], r"Scheduler at")
    workers = [start_process([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--host",
                              "127.0.0.1"], r"Registered to")[0] for _ in range(2)]
    yield address
    for proc in workers + [scheduler]:
        stop_process(proc)


def split_file_for(raw_dataset, path) -> str:
    """Every image of ``raw_dataset`` in a split file, train/val/test in turn."""
    ids = sorted(f"{c}/{f.rsplit('.', 1)[0]}" for c in os.listdir(os.path.join(raw_dataset, "images"))
                 for f in os.listdir(os.path.join(raw_dataset, "images", c)))
    path.write_text("image_id,split\n" + "".join(f"{i},{schema.SPLITS[n % 3]}\n" for n, i in enumerate(ids)))
    return str(path)


@pytest.mark.parametrize("split_args", ["fractions", "split file", "groups"])
def test_dask_runner_writes_the_same_dataset_as_the_direct_runner(dask_cluster, raw_dataset, tmp_path, split_args):
    extra = {"fractions": [], "split file": ["--split-file", split_file_for(raw_dataset, tmp_path / "splits.csv")],
             "groups": ["--group-pattern", r"^(.+/\d)"]}[split_args]  # groups: a class's ids by first digit
    args = ["--input", raw_dataset, "--shard-size-mb", "0.2", "--seed", "5", *extra]
    result = foodpipe("preprocess", *args, "--output", str(tmp_path / "dask"), "--runner", "DaskRunner",
                      "--dask_client_address", dask_cluster)
    assert result.returncode == 0, result.stderr
    # The job lets the work spread: it asks Dask for 4 partitions per worker thread (Beam's own
    # default, one per 128 files, would give one partition, so one worker). How the scheduler then
    # deals them out depends on the machine's load: `bench preprocess` reports it (worker_shares).
    flags = job_options.PipelineOptions(["--runner", "DaskRunner", "--dask_client_address", dask_cluster])
    assert job_options.dask_partition_flags(flags) == ["--dask_npartitions=8"]  # 2 workers x 1 thread
    shared = re.search(r"51/51 images validated .* by (\d+) worker processes? \(([\d, ]+)\)", result.stderr)
    assert shared, result.stderr[-3000:]
    counts = [int(n) for n in shared.group(2).split(", ")]
    assert int(shared.group(1)) in (1, 2) and sum(counts) == 51, counts
    on_dask = json.loads((tmp_path / "dask" / schema.METADATA_FILE).read_text())
    direct = preprocess.run(args + ["--output", str(tmp_path / "direct")])
    assert on_dask["job"]["runner"] == "DaskRunner" and direct["job"]["runner"] == "DirectRunner"
    assert on_dask["splits"] == direct["splits"] and on_dask["stats"] == direct["stats"]
    assert on_dask["split_source"] == direct["split_source"]
    assert sorted(os.listdir(tmp_path / "dask")) == sorted(os.listdir(tmp_path / "direct"))
    for name in os.listdir(tmp_path / "direct"):
        if name != schema.METADATA_FILE:
            assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
    assert not [n for n in os.listdir(tmp_path / "dask") if "temp" in n or n.startswith(".")]


def test_bench_preprocess_on_dask_reports_per_worker_figures(dask_cluster, raw_dataset, tmp_path):
    report = tmp_path / "bench.json"
    result = foodpipe("bench", "preprocess", "--input", raw_dataset, "--runner", "DaskRunner",
                      "--dask-client-address", dask_cluster, "--json", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(report.read_text())
    assert figures["runner"] == "DaskRunner" and figures["same_output"] is True
    assert figures["workers"] in (1, 2) and sum(figures["worker_shares"]) == 51  # how they spread: load-dependent
    assert figures["beam_steady_img_per_s_per_worker"] > 0
