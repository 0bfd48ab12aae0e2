"""The conformance CLI: run the grid, print the table and a JSON summary, exit 1 on a failure."""
import argparse
import json
import sys
from dataclasses import asdict

import numpy as np

from ..core.persist import atomic_write_text, output_path_problem
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
    parser.add_argument("--target", metavar="MODULE:CLASS|NAME",
                        help="check a Target (module:Class, or a built-in adapter: "
                             "reference, hnswlib, usearch[-f16|-i8|-b1], nanopq[-opq], "
                             "sentence-transformers, lancedb-ivfpq, lancedb-rabitq) instead of the faiss grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --target data (default 0)")
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary here (atomically) "
                                                       "instead of printing it")
    args = parser.parse_args(argv)
    if args.json:  # checked before the work: exit 1 means "a check failed", never a bad path
        problem = output_path_problem(args.json)
        if problem:
            parser.error(f"--json {args.json}: {problem}")
    if args.target is not None:
        return run_target_cli(args.target, args.seed)
    cases = [c for c in grid(args.quick) if args.only is None or c.component in args.only]
    try:
        results = run(cases)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); nothing written", file=sys.stderr)
        return 130
    print("\n".join(format_table(results)))
    report = json.dumps(summary(results, "quick" if args.quick else "full"), indent=1)
    if args.json:
        try:
            atomic_write_text(args.json, report + "\n")
        except OSError as exc:
            print(f"error: --json {args.json}: cannot write ({exc})", file=sys.stderr)
            return 2
    else:
        print(report)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} of {len(results)} checks passed", file=sys.stderr)
    return 1 if failed else 0


def run_target_cli(spec, seed):
    """--target: run every applicable check, print the table and the reproducers of the
    checks short of their claim; exit 1 on a finding (a claimed check that fails), 2 on a bad
    --target."""
    from .target import load_target
    from .target_data import seeded
    from .target_run import failed, markdown, run_target, table_lines
    try:
        target = load_target(spec)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = run_target(target, seeded(seed))
    print("\n".join(table_lines(target, rows)))
    print("\n".join(markdown(target, rows)[len(rows) + 4:]))
    bad = failed(target, rows)
    print(f"{len(rows) - len(bad)} of {len(rows)} checks as claimed or documented; "
          f"{len(bad)} finding(s)", file=sys.stderr)
    return 1 if bad else 0
