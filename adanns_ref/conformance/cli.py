"""The conformance CLI: run the grid, print the table and a JSON summary, exit 1 on a failure."""
import argparse
import json
import sys
from dataclasses import asdict

import numpy as np

from ..core.persist import atomic_write_text
from .checks import CHECKS
from .compare import import_faiss
from .grid import grid, run

_DESCRIPTION = "Conformance suite: every component of adanns_ref checked against faiss over a grid of cases."


def format_table(results):
    """Lines of the table component | case | check | result | max deviation (+ failure reasons)."""
    rows = [("component", "case", "check", "result", "max deviation")]
    rows += [(r.component, r.case, r.check, "pass" if r.passed else "FAIL", f"{r.max_deviation:.3g}")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines += [f"FAIL {r.component} {r.case} {r.check}: {r.message}" for r in results if not r.passed]
    return lines


def summary(results, grid_name):
    """JSON-able summary: totals, per component (checks, failed, max deviation), every result."""
    by_component = {}
    for r in results:
        by_component.setdefault(r.component, []).append(r)
    components = {name: {"checks": len(rs), "failed": sum(not r.passed for r in rs),
                         "max_deviation": _finite_or_none(max(r.max_deviation for r in rs))}
                  for name, rs in by_component.items()}
    return {"grid": grid_name, "faiss_version": import_faiss().__version__, "checks": len(results),
            "failed": sum(not r.passed for r in results), "components": components,
            "results": [dict(asdict(r), max_deviation=_finite_or_none(r.max_deviation)) for r in results]}


def _finite_or_none(value):
    return value if np.isfinite(value) else None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adanns_ref.conformance", description=_DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="the small grid pytest runs")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), metavar="COMPONENT",
                        help=f"run only these components ({', '.join(sorted(CHECKS))})")
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary here (atomically) "
                                                       "instead of printing it")
    args = parser.parse_args(argv)
    cases = [c for c in grid(args.quick) if args.only is None or c.component in args.only]
    results = run(cases)
    print("\n".join(format_table(results)))
    report = json.dumps(summary(results, "quick" if args.quick else "full"), indent=1)
    if args.json:
        atomic_write_text(args.json, report + "\n")
    else:
        print(report)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} of {len(results)} checks passed", file=sys.stderr)
    return 1 if failed else 0
