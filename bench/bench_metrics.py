"""/metrics scrape time with 200 instances, against /api/v1/health on the same node.

A real ``pipevisor serve`` runs 200 instances (the harness's sleepers: shell scripts, so the
machine stays quiet) with monitoring on (every process tree sampled each second, so every
instance has its resource series). One keep-alive client scrapes ``/metrics`` and calls the
health route alternately; the figures are the latency percentiles of each and their ratio. The
scrape is checked to parse and to carry a series per instance. Target: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
from _harness import (
    SupervisorServer,
    add_sleeper_entry,
    check_clean,
    start_sleepers,
    summary,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="20 instances, 30 scrapes")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.scrapes = 20, 30
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        root = Path(tmp)
        entry = add_sleeper_entry(root / "registry")
        sup = SupervisorServer(root / "registry", root / "state").start()
        try:
            assert entry == "sleeper"
            start_sleepers(sup, args.instances)
            base = sup.url.removesuffix("/api/v1")

            def sampled() -> bool:
                listed = sup.api("GET", "/instances").json()
                return all(i["resources"]["sampled_at"] is not None for i in listed)

            wait_for(sampled, timeout=60, what="every instance sampled")
            metrics_ms: list[float] = []
            health_ms: list[float] = []
            with httpx.Client(timeout=30) as client:
                text = client.get(f"{base}/metrics").text
                families = {f.name: f for f in text_string_to_metric_families(text)}
                series = len(families["pipevisor_instance_memory_rss_bytes"].samples)
                samples = sum(len(f.samples) for f in families.values())
                for _ in range(args.scrapes):
                    t0 = time.perf_counter()
                    client.get(f"{base}/metrics").raise_for_status()
                    t1 = time.perf_counter()
                    client.get(f"{base}/api/v1/health").raise_for_status()
                    t2 = time.perf_counter()
                    metrics_ms.append((t1 - t0) * 1000)
                    health_ms.append((t2 - t1) * 1000)
        finally:
            sup.stop()
    m, h = summary(metrics_ms), summary(health_ms)
    print(f"{args.instances} instances, {args.scrapes} scrapes; a scrape: {len(text)} bytes, "
          f"{samples} samples, rss series for {series} instances")  # fmt: skip
    print(f"{'route':<22}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, s in (("GET /metrics", m), ("GET /api/v1/health", h)):
        print(f"{label:<22}{s['median']:>9.2f}{s['p99']:>9.2f}{s['max']:>9.2f}")
    ratio = m["p99"] / h["p99"]
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT metrics_p50_ms={m['median']:.2f} metrics_p99_ms={m['p99']:.2f} "
        f"health_p99_ms={h['p99']:.2f} ratio={ratio:.1f} target=p99<50ms "
        f"met={'yes' if m['p99'] < 50 else 'no'}"
    )


if __name__ == "__main__":
    main()
