"""DuckDB side of the benches, run by the Rust benches in the same process tree and run.

read <csv> <day_start_ns> <budget_s>: load the CSV into an on-disk DuckDB and time the read
queries; write <dir> <rows> <budget_s>: time INSERT of <rows> rows + COMMIT (fsync) per batch.
storage <csv>: load the CSV into an on-disk DuckDB and print its file size after CHECKPOINT, the
sizes of Parquet files (zstd, snappy) written by COPY, and the median seconds of three COPYs (zstd).
Prints "name<TAB>median_microseconds" (read, write) or "name<TAB>bytes" (storage) lines.
"""
import os
import statistics
import sys
import tempfile
import time

import duckdb


def timed(fn, budget):
    fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(samples) < 5:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def read(csv, day_start, budget):
    day = 86_400 * 10**9
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(os.path.join(d, "bench.duckdb"))
        con.execute(f"CREATE TABLE events AS SELECT * FROM read_csv_auto('{csv}')")
        lo, hi = day_start + int(day * 0.45), day_start + int(day * 0.55)
        agg = "SELECT count(*), sum(metric), sum(tokens), sum(latency), min(ts), max(ts) FROM events"
        queries = {
            "aggregate, no filter": agg,
            "aggregate, user": agg + " WHERE user = 'user-0042'",
            "aggregate, 10% time range": agg + f" WHERE ts >= {lo} AND ts < {hi}",
            "aggregate, user + time": agg + f" WHERE user = 'user-0042' AND ts >= {lo} AND ts < {hi}",
            "query_recent 100": "SELECT * FROM events ORDER BY ts DESC, id DESC LIMIT 100",
            "query_recent 1000": "SELECT * FROM events ORDER BY ts DESC, id DESC LIMIT 1000",
            "query_recent 100, user": "SELECT * FROM events WHERE user = 'user-0042' ORDER BY ts DESC, id DESC LIMIT 100",
            "rollup, single user, day": f"SELECT user, count(*), sum(metric), sum(tokens) FROM events WHERE ts >= {day_start} AND ts < {day_start + day} AND user = 'user-0042' GROUP BY user",
            "rollup, all buckets, day": f"SELECT user, count(*), sum(metric), sum(tokens) FROM events WHERE ts >= {day_start} AND ts < {day_start + day} GROUP BY user",
            "top 10 users by metric": "SELECT user, count(*), sum(metric), sum(tokens) FROM events GROUP BY user ORDER BY sum(metric) DESC, user LIMIT 10",
            "top 10 users by metric, 10% time range": f"SELECT user, count(*), sum(metric), sum(tokens) FROM events WHERE ts >= {lo} AND ts < {hi} GROUP BY user ORDER BY sum(metric) DESC, user LIMIT 10",
            "time series, 24 hourly buckets": "SELECT time_bucket(INTERVAL 1 hour, make_timestamp(ts // 1000)) AS b, count(*), sum(metric), sum(tokens) FROM events GROUP BY b ORDER BY b",
            "get_event by id": "SELECT * FROM events WHERE id = 'evt-00500000'",
        }
        for name, q in queries.items():
            print(f"{name}\t{timed(lambda: con.execute(q).fetchall(), budget):.1f}", flush=True)


def write(d, rows, budget):
    con = duckdb.connect(os.path.join(d, "write.duckdb"))
    con.execute("CREATE TABLE events(id VARCHAR, ts BIGINT, metric BIGINT, tokens INTEGER, latency INTEGER, status SMALLINT, usr VARCHAR, model VARCHAR)")
    # Columns are built once and passed as list parameters: only DuckDB's insert and commit
    # are timed.
    cols = [
        [f"evt-{i}" for i in range(rows)],
        list(range(rows)),
        [i * 7 for i in range(rows)],
        [i % 4000 for i in range(rows)],
        [i % 3000 for i in range(rows)],
        [200] * rows,
        [f"user-{i % 1000:04}" for i in range(rows)],
        [f"model-{i % 10}" for i in range(rows)],
    ]
    insert = "INSERT INTO events SELECT " + ", ".join(f"unnest(${i + 1})" for i in range(len(cols)))

    def batch():
        con.execute("BEGIN")
        con.execute(insert, cols)
        con.execute("COMMIT")

    print(f"insert+commit {rows} rows\t{timed(batch, budget):.1f}", flush=True)


def storage(csv):
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "storage.duckdb")
        con = duckdb.connect(db)
        con.execute(f"CREATE TABLE events AS SELECT * FROM read_csv_auto('{csv}')")
        con.execute("CHECKPOINT")
        for codec in ("zstd", "snappy"):
            out = os.path.join(d, f"events.{codec}.parquet")
            con.execute(f"COPY events TO '{out}' (FORMAT parquet, COMPRESSION {codec})")
        times = []
        for _ in range(3):
            out = os.path.join(d, "timed.parquet")
            t = time.perf_counter()
            con.execute(f"COPY events TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
            times.append(time.perf_counter() - t)
            os.remove(out)
        con.close()
        print(f"copy zstd seconds\t{statistics.median(times)}")
        print(f"duckdb (after CHECKPOINT)\t{os.path.getsize(db)}")
        for codec in ("zstd", "snappy"):
            print(f"parquet {codec}\t{os.path.getsize(os.path.join(d, f'events.{codec}.parquet'))}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "read":
        read(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "write":
        write(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "storage":
        storage(sys.argv[2])
    else:
        sys.exit(f"unknown mode {mode}")
