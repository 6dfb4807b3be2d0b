"""Print the benchmark summary table from pytest-benchmark JSON files.

    python -m bench.report bench_hull.json [more.json ...]

Columns: workload, what was timed, geomcore seconds, anchor seconds (SVC as the
original's hull2hull, Intel's oneDAL SVC; per pair for HiGHS), ratios, max relative distance error
against the QP, decisions that disagree with HiGHS (geomcore / SVC), LP
escalations. Numbers come from ``extra_info`` recorded by the suites.
"""

from __future__ import annotations

import json
import sys


def _fmt(v, spec=".3g"):
    if v is None:
        return "n/a"
    return format(v, spec) if isinstance(v, float) else str(v)


def rows(paths):
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        for b in data.get("benchmarks", []):
            info = b.get("extra_info", {})
            if "geomcore_s" in info:
                yield info


def main(argv=None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__)
        return 2
    head = (
        "workload",
        "kind",
        "pairs",
        "geomcore s",
        "SVC s",
        "ratio SVC",
        "oneDAL SVC s",
        "ratio oneDAL",
        "LinearSVC s",
        "HiGHS s/pair",
        "ratio HiGHS/pair",
        "max rel err",
        "SVC max rel err",
        "oneDAL max rel err",
        "disagree (geo/SVC/oneDAL)",
        "escalations",
        "pairs with truth",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows(paths):
        disagree = "/".join(
            _fmt(r.get(k))
            for k in ("disagree_highs", "svc_disagree_highs", "intel_svc_disagree_highs")
        )
        cells = [
            r["workload"],
            r["kind"],
            _fmt(r.get("pairs")),
            _fmt(r["geomcore_s"]),
            _fmt(r.get("svc_s")),
            _fmt(r.get("ratio_svc"), ".1f"),
            _fmt(r.get("intel_svc_s")),
            _fmt(r.get("ratio_intel_svc"), ".1f"),
            _fmt(r.get("linearsvc_s")),
            _fmt(r.get("highs_per_pair_s")),
            _fmt(r.get("ratio_highs_per_pair"), ".0f"),
            _fmt(r.get("max_rel_err"), ".1e"),
            _fmt(r.get("svc_max_rel_err"), ".1e"),
            _fmt(r.get("intel_svc_max_rel_err"), ".1e"),
            disagree,
            _fmt(r.get("escalations")),
            _fmt(r.get("truth_pairs")),
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
