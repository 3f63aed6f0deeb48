"""`herd bench serve`: every request of the load comes back with its tokens counted, against both servers,
and the percentiles are numpy's."""

import numpy as np
import pytest

from herd.serve.bench import bench_serve, percentile


def test_percentile_is_numpys_linear_interpolation():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.5]
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_load_runs_against_herd_and_the_unbatched_peer(tiny):
    model, tok = tiny
    r = bench_serve(model, tok, [f"prompt {i}" for i in range(6)], concurrency=3, max_tokens=4)
    assert set(r["rows"]) == {"herd engine", "one sequence at a time"}
    for row in r["rows"].values():
        assert row["requests"] == 6 and row["output_tokens_per_s"] > 0
        assert row["ttft_ms"]["p50"] <= row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
    assert r["ratios"]["output tokens/s"] > 0
