#!/usr/bin/env python3
"""Reads every table of a cellfab run folder with pyarrow and checks it against the other
formats, the seed layout's JSON files and the manifest.

Usage: python3 scripts/check_tables.py RUN_DIR

Prints one line per check, `ok …` or `not ok …` (scripts/test.sh counts them), and exits 1
if any check failed. The run must have been written with --format json,jsonl,csv,parquet.
"""

import csv
import hashlib
import json
import os
import sys

import pyarrow.parquet as pq

failures = 0


def check(ok, what):
    global failures
    print(("ok " if ok else "not ok ") + what)
    if not ok:
        failures += 1


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def main(run_dir):
    with open(os.path.join(run_dir, "manifest.json")) as f:
        manifest = json.load(f)
    entries = manifest.get("tables", [])
    check(len(entries) > 0, "manifest lists tables")
    by_table = {}
    for e in entries:
        by_table.setdefault(e["table"], {})[e["format"]] = e
    for table, formats in sorted(by_table.items()):
        pq_entry, csv_entry, jsonl_entry = formats.get("parquet"), formats.get("csv"), formats.get("jsonl")
        if not (pq_entry and csv_entry and jsonl_entry):
            check(False, f"{table}: all three formats present")
            continue
        parquet_path = os.path.join(run_dir, pq_entry["path"])
        t = pq.read_table(parquet_path)
        with open(os.path.join(run_dir, csv_entry["path"]), newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            csv_rows = sum(1 for _ in reader)
        with open(os.path.join(run_dir, jsonl_entry["path"])) as f:
            jsonl_rows = [json.loads(line) for line in f]
        same_rows = t.num_rows == csv_rows == len(jsonl_rows) == pq_entry["rows"] == csv_entry["rows"]
        same_columns = t.column_names == header == (list(jsonl_rows[0].keys()) if jsonl_rows else header)
        hashes = all(sha256(os.path.join(run_dir, e["path"])) == e["sha256"] for e in formats.values())
        check(
            same_rows and same_columns and hashes,
            f"{table}: pyarrow reads {t.num_rows} rows x {t.num_columns} columns; "
            f"csv {csv_rows}, jsonl {len(jsonl_rows)}, manifest {pq_entry['rows']}; sha256 {'ok' if hashes else 'WRONG'}",
        )
        if "machine_id" in t.column_names and table not in ("events", "kpis"):
            machines = set(t.column("machine_id").to_pylist())
            for m in sorted(machines):
                n = t.column("machine_id").to_pylist().count(m)
                check(n == manifest["sample_counts"].get(m), f"{table}: {n} rows of {m} = manifest sample count")
                stage = table if m.endswith("_Cell") else table.rsplit("_", 1)[0]
                folder = os.path.join(run_dir, stage + "_output")
                if os.path.isdir(folder):
                    files = [x for x in os.listdir(folder) if x.startswith(m + "_") and "_result_at_" in x]
                    check(n == len(files), f"{table}: {n} rows of {m} = {len(files)} JSON sample files")
    with open(os.path.join(run_dir, "cell_results.jsonl")) as f:
        cells = [json.loads(line) for line in f]
    ct = pq.read_table(os.path.join(run_dir, by_table["cells"]["parquet"]["path"]))
    check(
        ct.column("cell_id").to_pylist() == [c["cell_id"] for c in cells]
        and ct.column("discharge_capacity_ah").to_pylist() == [c["discharge_capacity_ah"] for c in cells],
        f"cells: {ct.num_rows} rows equal cell_results.jsonl (ids and capacities)",
    )
    print(f"tables: {len(entries)} files checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
