"""History store write throughput: telemetry samples and job upserts per second, batched as the
gateway's writer thread batches them (one transaction per batch).

Run: ``python3 bench/history_writes.py [--rows 20000] [--batch 500] [--url postgresql://...]``.
Without ``--url`` it measures a SQLite file (WAL) in a temporary directory; with it, the given
PostgreSQL database (tables are created there: use a scratch database).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bambulab.farm.history import HistoryStore, JobRecord, Sample


def measure(target: str, rows: int, batch: int) -> dict[str, float]:
    with HistoryStore.open(target) as store:
        t0 = time.time()
        samples = [Sample(f"S{i % 1000:04d}", t0 + i, nozzle=220.0, nozzle_target=220.0, bed=60.0, bed_target=60.0,
                          progress=i % 100, layer=i % 300, state="RUNNING") for i in range(rows)]
        start = time.perf_counter()
        for i in range(0, rows, batch):
            store.write(samples[i:i + batch])
        sample_rate = rows / (time.perf_counter() - start)
        jobs = [JobRecord(f"bench:{t0}:{i}", f"S{i % 1000:04d}", t0 + i, layers=i % 300, printer="bench")
                for i in range(rows // 4)]
        start = time.perf_counter()
        for i in range(0, len(jobs), batch):
            store.write(jobs[i:i + batch])
        for i in range(0, len(jobs), batch):  # the same jobs again: upserts that update
            store.write([JobRecord(j.job_key, j.serial, j.started_at, layers=(j.layers or 0) + 1)
                         for j in jobs[i:i + batch]])
        job_rate = 2 * len(jobs) / (time.perf_counter() - start)
    return {"samples_per_s": sample_rate, "job_upserts_per_s": job_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--url", help="a scratch PostgreSQL database instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        target = args.url or str(Path(tmp) / "bench.sqlite3")
        figures = measure(target, args.rows, args.batch)
    backend = "postgresql" if args.url else "sqlite"
    print(f"{backend}: {figures['samples_per_s']:,.0f} telemetry samples/s, "
          f"{figures['job_upserts_per_s']:,.0f} job upserts/s (batches of {args.batch})")


if __name__ == "__main__":
    main()
