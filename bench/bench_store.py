"""State write cost per change: the node's SQLite store (one row per instance) against the old
whole-file JSON write, with 10 and 2,000 instances saved.

A change is what an operator's stop or a config patch saves: one instance's record (its desired
state toggled, its config of ``--config-keys`` parameters). Per change:
  sqlite     ``StateStore.put(record)``: one row upserted and committed (WAL, synchronous=FULL)
  json_file  the previous version's ``StateStore.save``, re-implemented here: every record
             dumped, JSON with an indent, temp file, fsync, rename, fsync of the folder
Both write to the same temporary folder, alternating in rounds; both fsync at each change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from supervisor.atomicfile import write_atomic
from supervisor.store import InstanceRecord, StateStore


def _records(n: int, keys: int) -> list[InstanceRecord]:
    config = {f"param_{k}": k * 0.5 for k in range(keys)}
    return [
        InstanceRecord(name=f"inst{i:05d}", entry="beam", config=config, desired="running")
        for i in range(n)
    ]


def _old_save(path: Path, records: list[InstanceRecord]) -> None:
    """The whole-file write of the previous version (``_StateFile`` of every record)."""
    data = {"version": 1, "instances": [r.model_dump(mode="json") for r in records]}
    text = json.dumps(data, indent=2, ensure_ascii=True).encode("ascii")
    write_atomic(path, text, temp_prefix=".state-")


def _measure(n: int, rounds: int, keys: int, root: Path) -> dict[str, Any]:
    records = _records(n, keys)
    folder = root / f"n{n}"
    store = StateStore(folder)
    with store.transaction():
        for record in records:
            store.put(record)
    legacy = folder / "old-instances.json"
    _old_save(legacy, records)
    times: dict[str, list[float]] = {"sqlite": [], "json_file": []}
    for r in range(rounds):
        i = r % n
        records[i] = records[i].model_copy(
            update={"desired": "stopped" if records[i].desired == "running" else "running"}
        )
        t = time.perf_counter()
        store.put(records[i])
        times["sqlite"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _old_save(legacy, records)
        times["json_file"].append(time.perf_counter() - t)
    assert {x.name: x.desired for x in store.load()} == {x.name: x.desired for x in records}
    store.close()
    sizes = {
        "sqlite": sum(p.stat().st_size for p in folder.glob("state.db*")),
        "json_file": legacy.stat().st_size,
    }
    return {
        kind: {
            "median": statistics.median(ts) * 1e3,
            "p95": sorted(ts)[int(0.95 * (len(ts) - 1))] * 1e3,
            "bytes": sizes[kind],
        }
        for kind, ts in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,2000", help="instance counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=200, help="changes per size and kind")
    parser.add_argument("--config-keys", type=int, default=20, help="parameters per config")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        for n in sizes:
            results[n] = _measure(n, rounds, args.config_keys, root)
    clean = "ok" if not Path(tmp).exists() else f"left behind: {tmp}"

    print(f"{'instances':>9}  {'kind':<10} {'median ms':>10} {'p95 ms':>8} {'on disk':>12}")
    for n, kinds in results.items():
        for kind, r in kinds.items():
            print(f"{n:>9}  {kind:<10} {r['median']:>10.3f} {r['p95']:>8.3f} {r['bytes']:>12,}")
    lo, hi = min(sizes), max(sizes)
    new_lo, new_hi = results[lo]["sqlite"]["median"], results[hi]["sqlite"]["median"]
    old_lo, old_hi = results[lo]["json_file"]["median"], results[hi]["json_file"]["median"]
    print(f"cleanup: {clean}")
    print(
        f"RESULT sqlite_ms_{lo}={new_lo:.3f} sqlite_ms_{hi}={new_hi:.3f} "
        f"json_file_ms_{lo}={old_lo:.3f} json_file_ms_{hi}={old_hi:.3f} "
        f"growth={new_hi / new_lo:.2f} baseline_growth={old_hi / old_lo:.2f} "
        f"ratio={old_hi / new_hi:.1f} target=flat"
    )


if __name__ == "__main__":
    main()
