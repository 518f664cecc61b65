"""The benchmarks run on tiny data for the shape of their report, never for their speed."""

import json

import pytest

from tests.conftest import foodpipe

pytestmark = pytest.mark.slow


def test_bench_preprocess_reports_every_figure(raw_dataset, tmp_path):
    report = tmp_path / "bench.json"
    result = foodpipe("bench", "preprocess", "--input", raw_dataset, "--json", str(report))
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    for key in ("beam_img_per_s", "single_loop_img_per_s", "beam_vs_single_loop", "beam_peak_rss_mb",
                "single_loop_peak_rss_mb"):
        assert figures[key] > 0, key
        assert key in result.stdout
    assert figures["images"] == 51 and figures["cores"] >= 1
    assert figures["same_output"] is True  # the loop is a faithful peer: identical shards and manifest


def test_bench_needs_an_input():
    result = foodpipe("bench", "preprocess")
    assert result.returncode != 0 and "needs --input" in result.stderr
