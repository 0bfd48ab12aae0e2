"""Choosing under budgets, on the validation half; the test half only reports.

Budgets (None = not given): ``ms`` (the faiss form's ms per query at one thread, batch, median:
`ms_1t`), ``mflops``, ``bytes`` (per vector) and ``recall`` (the least validation recall).

Timings are noisy and recall, MFLOPs and bytes are not, so every rule that would pick "the
fastest" picks reproducibly instead (issue 26, item 20):

    fastest(rows) = among the rows whose ms_1t <= (1 + TIME_TOLERANCE) * min ms_1t (the band),
                    the one with the least (MFLOPs, bytes, config name).

Two runs therefore choose the same row as long as timing noise does not move a row across the
band's edge; rows inside the band are within TIME_TOLERANCE of the fastest, so the choice costs
at most that much time. The timings themselves are recorded in tune.json.

- Per cost budget alone: the highest validation recall among rows within it; equal recalls go
  to the least (MFLOPs, bytes, config name).
- ``recall`` alone: fastest() of the rows reaching it.
- Overall (the configuration exported): every given budget at once; with a recall floor
  fastest() of the rows meeting all of them, else the best recall. With no budget at all:
  fastest() of the rows with validation recall >= `DEFAULT_RECALL`, or the best recall if none
  reaches it.

A budget no row meets is not an exception here: `per_budget` and `overall` return the reason
("--budget-ms 0.001: none meets it; the cheapest is <row>") so that the reports are written
first; `run.tune` raises after writing them.
"""
COST_FIELDS = {"ms": "ms_1t", "mflops": "mflops", "bytes": "bytes"}
FLAGS = {"ms": "--budget-ms", "mflops": "--budget-mflops", "bytes": "--budget-bytes",
         "recall": "--min-recall"}
DEFAULT_RECALL = 0.9
TIME_TOLERANCE = 0.10


def _describe(row, field):
    return f"{row['config']} ({field}={row[field]:.4g})"


def cost_key(row):
    """The deterministic order used to break ties: MFLOPs, then bytes, then the name."""
    return (row["mflops"], row["bytes"], row["config"])


def fastest(rows, tolerance=TIME_TOLERANCE):
    """The least-cost row among those within (1 + tolerance) of the least ms_1t (docstring)."""
    best = min(r["ms_1t"] for r in rows)
    return min((r for r in rows if r["ms_1t"] <= best * (1 + tolerance)), key=cost_key)


def best_recall(rows):
    top = max(r["recall_val"] for r in rows)
    return min((r for r in rows if r["recall_val"] == top), key=cost_key)


def per_budget(rows, budgets):
    """({budget name: chosen row} for each given budget on its own, {name: why none meets it})."""
    chosen, failed = {}, {}
    for name, field in COST_FIELDS.items():
        value = budgets.get(name)
        if value is None:
            continue
        ok = [r for r in rows if r[field] <= value]
        if ok:
            chosen[name] = best_recall(ok)
        else:
            failed[name] = (f"{FLAGS[name]} {value:g}: none meets it; the cheapest is "
                            f"{_describe(min(rows, key=lambda r: r[field]), field)}")
    if budgets.get("recall") is not None:
        ok = [r for r in rows if r["recall_val"] >= budgets["recall"]]
        if ok:
            chosen["recall"] = fastest(ok)
        else:
            failed["recall"] = (f"--min-recall {budgets['recall']:g}: none meets it; the most "
                                f"accurate is {_describe(best_recall(rows), 'recall_val')}")
    return chosen, failed


def overall(rows, budgets):
    """(the row meeting every given budget (module docstring), None) or (None, why not)."""
    ok = list(rows)
    for name, field in COST_FIELDS.items():
        if budgets.get(name) is not None:
            ok = [r for r in ok if r[field] <= budgets[name]]
    floor = budgets.get("recall")
    if floor is not None:
        ok = [r for r in ok if r["recall_val"] >= floor]
    if not ok:
        given = ", ".join(f"{FLAGS[n]} {v:g}" for n, v in budgets.items() if v is not None)
        return None, (f"{given} together: none meets them all; the fastest is "
                      f"{_describe(fastest(rows), 'ms_1t')}; relax one budget")
    if floor is not None:
        return fastest(ok), None
    if not any(v is not None for v in budgets.values()):
        good = [r for r in ok if r["recall_val"] >= DEFAULT_RECALL]
        return (fastest(good) if good else best_recall(ok)), None
    return best_recall(ok), None


def rule(budgets):
    """The overall rule in words, for the report."""
    if budgets.get("recall") is not None:
        return f"fastest meeting every budget (within {TIME_TOLERANCE:.0%} of the fastest: least MFLOPs)"
    if any(v is not None for v in budgets.values()):
        return "best recall meeting every budget"
    return (f"fastest with recall >= {DEFAULT_RECALL} (within {TIME_TOLERANCE:.0%} of the "
            f"fastest: least MFLOPs)")
