"""The faithfulness table of a ``bert-lrp evaluate`` run restricted to the first N data rows,
from the run's own per-example records (no model is run):

    python scripts/faithfulness_subset.py runs/frontier-sst2 48

Prints the markdown table (quality columns; the cost column is per run, not per example).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bert_lrp._jsonl import read_records
from bert_lrp.evaluation.faithfulness import aggregate, finished_records, markdown_table


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, rows = Path(sys.argv[1]), int(sys.argv[2])
    merged = out / "examples.jsonl"  # a finished run; else the parts of an unfinished one
    found = ({int(r["index"]): r for r in read_records(merged)} if merged.is_file() else finished_records(out))
    records = [record for index, record in sorted(found.items()) if index < rows]
    if not records:
        print(f"{out}: no finished examples among the first {rows} rows", file=sys.stderr)
        return 1
    print(markdown_table(aggregate(records, list(records[0]["methods"]))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
