#!/usr/bin/env python3
"""Standalone checker of adanns-ref golden vectors (NumPy only; does not import adanns_ref).

    python golden_check.py GOLDEN_DIR               verify the set: SHA-256, dtypes, shapes, params
    python golden_check.py GOLDEN_DIR RESULTS_DIR   also compare RESULTS_DIR/<case>.npz (your
                                                    implementation's out_<name> arrays) with the
                                                    expected outputs under the manifest's rules
Exit 0 if everything checked passes, 1 otherwise. Format: tests/golden/FORMAT.md.
"""
import hashlib, json, os, sys
import numpy as np


def load(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def compare(name, got, want, rule):
    if got is None:
        return [f"out_{name}: missing"]
    if got.dtype != want.dtype or got.shape != want.shape:
        return [f"out_{name}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}"]
    if rule["compare"] == "exact":
        bad = np.atleast_1d(got != want)
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        bad = np.atleast_1d(~(np.abs(g - w) <= rule["atol"] + rule["rtol"] * np.abs(w)))
    return [f"out_{name}: {int(bad.sum())} of {bad.size} values differ ({rule['compare']})"] if bad.any() else []


def check(golden, results=None):
    manifest = json.load(open(os.path.join(golden, "manifest.json"), encoding="utf-8"))
    if (manifest.get("format"), manifest.get("version")) != ("adanns-ref-golden", 1):
        return {"manifest.json": ["not format adanns-ref-golden version 1"]}
    report = {}
    for file, sha in manifest["files"].items():
        path = os.path.join(golden, file)
        found = hashlib.sha256(open(path, "rb").read()).hexdigest() if os.path.exists(path) else "missing"
        report[file] = [] if found == sha else [f"SHA-256 {found}, manifest {sha}"]
    for case in manifest["cases"]:
        problems = report.setdefault(case["file"], [])
        if problems:
            continue
        arrays = load(os.path.join(golden, case["file"]))
        if str(arrays.get("params")) != json.dumps(case["params"], sort_keys=True):
            problems.append("params differ from the manifest")
        for kind, specs in (("in", case["inputs"]), ("out", case["outputs"])):
            for name, spec in specs.items():
                a = arrays.get(f"{kind}_{name}")
                if a is None or a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
                    problems.append(f"{kind}_{name}: absent or not {spec['dtype']}{spec['shape']}")
        if results is not None and not problems:
            mine = os.path.join(results, case["file"])
            got = load(mine) if os.path.exists(mine) else {}
            for name, rule in case["outputs"].items():
                problems += compare(name, got.get(f"out_{name}"), arrays[f"out_{name}"], rule)
    return report


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    report = check(*sys.argv[1:])
    for name, problems in sorted(report.items()):
        print(("FAIL " if problems else "ok   ") + name + "".join("\n     " + p for p in problems))
    failed = sum(bool(p) for p in report.values())
    print(f"{len(report) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)
