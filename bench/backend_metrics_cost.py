"""What scraping backends' metrics costs (docs/pool.md#backend-metrics): one scrape's parse of a
realistic vLLM exposition (off the request path, in a worker thread), and what the request
path pays: `Endpoint.load()` with scraping off (one attribute check) and on (an attribute read
of the stored reading plus a clock read).

    python bench/backend_metrics_cost.py [--repeats 2000] [--engines 2]

The exposition is shaped like vLLM V1's (0.10): per engine, the load gauges, counters and
the usual latency/token histograms with vLLM's bucket bounds, plus process metrics. The full
parse with prometheus_client (no line filter) is shown beside ours for comparison.
"""

from __future__ import annotations

import argparse
import time

from prometheus_client.parser import text_string_to_metric_families
from timing import p50_ms

from routeyard.catalog import build_config
from routeyard.metrics import Metrics
from routeyard.pool import Pool
from routeyard.pool.backend_metrics import BackendLoad, parse_exposition, read_model

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
_LATENCY_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                   5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_TOKEN_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
                 100000)
_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": _LATENCY_BOUNDS,
    "vllm:inter_token_latency_seconds": _LATENCY_BOUNDS,
    "vllm:e2e_request_latency_seconds": _LATENCY_BOUNDS,
    "vllm:request_queue_time_seconds": _LATENCY_BOUNDS,
    "vllm:request_inference_time_seconds": _LATENCY_BOUNDS,
    "vllm:request_prefill_time_seconds": _LATENCY_BOUNDS,
    "vllm:request_decode_time_seconds": _LATENCY_BOUNDS,
    "vllm:request_prompt_tokens": _TOKEN_BOUNDS,
    "vllm:request_generation_tokens": _TOKEN_BOUNDS,
    "vllm:iteration_tokens_total": _TOKEN_BOUNDS,
    "vllm:request_max_num_generation_tokens": _TOKEN_BOUNDS,
    "vllm:request_params_max_tokens": _TOKEN_BOUNDS,
}


def vllm_exposition(engines: int) -> str:
    lines: list[str] = []
    for name in ("python_gc_objects_collected_total", "process_cpu_seconds_total"):
        lines += [f"# TYPE {name} counter", f"{name} 1234.0"]
    gauges = {"vllm:num_requests_running": 12.0, "vllm:num_requests_waiting": 3.0,
              "vllm:kv_cache_usage_perc": 0.42}
    for name, value in gauges.items():
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{engine="{e}",model_name="{MODEL}"}} {value}' for e in range(engines)]
    for reason in ("capacity", "deferred"):
        lines.append(f'vllm:num_requests_waiting_by_reason{{engine="0",model_name="{MODEL}",'
                     f'reason="{reason}"}} 1.0')
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:num_preemptions_total", "vllm:prefix_cache_queries_total",
                 "vllm:prefix_cache_hits_total"):
        lines += [f"# TYPE {name} counter"]
        lines += [f'{name}{{engine="{e}",model_name="{MODEL}"}} 81289.0' for e in range(engines)]
    for finished in ("stop", "length", "abort"):
        lines.append(f'vllm:request_success_total{{engine="0",finished_reason="{finished}",'
                     f'model_name="{MODEL}"}} 77.0')
    for name, bounds in _HISTOGRAMS.items():
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} histogram"]
        for e in range(engines):
            labels = f'engine="{e}",model_name="{MODEL}"'
            lines += [f'{name}_bucket{{{labels},le="{b}"}} {i * 3.0}'
                      for i, b in enumerate(bounds)]
            lines += [f'{name}_bucket{{{labels},le="+Inf"}} 99.0', f"{name}_count{{{labels}}} 99.0",
                      f"{name}_sum{{{labels}}} 123.4"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--engines", type=int, default=2, help="vLLM data-parallel engines")
    args = parser.parse_args()
    text = vllm_exposition(args.engines)
    samples = parse_exposition(text)
    reading = read_model(samples, MODEL)
    assert reading is not None and reading.running == 12.0 * args.engines
    print(f"exposition: {len(text.splitlines())} lines, {len(text) / 1024:.1f} KiB, "
          f"{args.engines} engine(s)")
    few = max(50, args.repeats // 20)
    full = p50_ms(lambda: sum(1 for _ in text_string_to_metric_families(text)), few)
    print(f"scrape, full prometheus_client parse (no filter):  p50 {full:8.3f} ms")
    ours = p50_ms(lambda: parse_exposition(text), args.repeats)
    print(f"scrape, parse_exposition (filtered lines):          p50 {ours:8.3f} ms")
    pick = p50_ms(lambda: read_model(samples, MODEL), args.repeats)
    print(f"scrape, read_model for one endpoint:                p50 {pick * 1000:8.2f} us")

    config = build_config({"models": [{"name": "m", "endpoints": [
        {"base_url": "http://127.0.0.1:9/v1"}, {"base_url": "http://127.0.0.1:9/v1"}]}],
        "default": {"candidates": ["m"]}})
    endpoint = Pool(config, Metrics()).models["m"].endpoints[0]
    loops = 100_000
    off = p50_ms(lambda: [endpoint.load() for _ in range(loops)], 30) / loops
    now = time.monotonic()
    endpoint.backend_load = BackendLoad(3.0, 12.0, 0.42, now, now + 3600, 0, False)
    on = p50_ms(lambda: [endpoint.load() for _ in range(loops)], 30) / loops
    print(f"request path, Endpoint.load() scraping off:         p50 {off * 1e6:8.1f} ns")
    print(f"request path, Endpoint.load() fresh reading:        p50 {on * 1e6:8.1f} ns")


if __name__ == "__main__":
    main()
