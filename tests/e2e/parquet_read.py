"""Reads a keplordb Parquet export (Hive partitions dt=YYYY-MM-DD) with DuckDB and pyarrow, as a
user would, checks the schema against engine/FORMAT.md ("Parquet export"), and prints one JSON
line of answers for tests/e2e/parquet_export.rs to compare with the engine's own.

    python3 parquet_read.py EXPORT_DIR
"""

import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

root = sys.argv[1]
glob = root + "/dt=*/*.parquet"

# pyarrow: the documented types, and dt as a Hive partition column.
dataset = ds.dataset(root, format="parquet", partitioning="hive")
schema = dataset.schema
want = {
    "ts": pa.timestamp("ns", tz="UTC"),
    "id": pa.string(),
    "metric": pa.int64(),
    "latency_ms": pa.uint32(),
    "latency_detail_ms": pa.uint32(),
    "status": pa.uint16(),
    "flags": pa.uint16(),
    "user": pa.string(),
    "model": pa.string(),
    "tokens": pa.uint32(),
    "budget": pa.uint32(),
    "note": pa.string(),
}
for name, t in want.items():
    got = schema.field(name).type
    assert got == t, f"{name}: {got}, want {t}"
assert "dt" in schema.names, schema.names
table = dataset.to_table()
assert table.num_rows == sum(f.count_rows() for f in dataset.get_fragments())

con = duckdb.connect()
src = f"read_parquet('{glob}', hive_partitioning = true)"
count, metric, tokens, budget, errors = con.execute(
    f"SELECT count(*), sum(metric), sum(tokens), sum(budget), "
    f"count(*) FILTER (WHERE status >= 500) FROM {src}"
).fetchone()
by_user = con.execute(
    f"SELECT \"user\", count(*), sum(metric) FROM {src} GROUP BY \"user\" ORDER BY \"user\""
).fetchall()
newest = [r[0] for r in con.execute(f"SELECT id FROM {src} ORDER BY ts DESC, id DESC LIMIT 5").fetchall()]
days = [str(r[0]) for r in con.execute(f"SELECT DISTINCT dt FROM {src} ORDER BY dt").fetchall()]
# The partition value is the UTC day of every row in it.
bad = con.execute(
    f"SELECT count(*) FROM {src} WHERE CAST(dt AS VARCHAR) <> strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d')"
).fetchone()[0]
assert bad == 0, f"{bad} rows outside their dt partition"
print(
    json.dumps(
        {
            "count": count,
            "metric": int(metric),
            "tokens": int(tokens),
            "budget": int(budget),
            "errors": errors,
            "by_user": [[u, n, int(m)] for u, n, m in by_user],
            "newest": newest,
            "days": days,
        }
    )
)
