"""Choosing under budgets, on the validation half; the test half only reports.

Budgets (None = not given): ``ms`` (ms per query at one thread, `ms_1t`), ``mflops``, ``bytes``
(per vector) and ``recall`` (the least validation recall accepted).

- Per cost budget alone: the highest validation recall among rows within it
  (`select.best_under_budget`; ties to the lower cost).
- ``recall`` alone: the fastest row (ms_1t, then MFLOPs) reaching it.
- Overall (the configuration exported): every given budget at once; with a recall floor the
  fastest row meeting all of them, else the best recall. With no budget at all: the fastest
  row with validation recall >= `DEFAULT_RECALL`, or the best recall if none reaches it.

A budget that no row meets raises ValueError "... none meets it; the cheapest is <row>".
"""
from ..evaluation.select import best_under_budget

COST_FIELDS = {"ms": "ms_1t", "mflops": "mflops", "bytes": "bytes"}
DEFAULT_RECALL = 0.9


def _describe(row, field):
    return f"{row['config']} ({field}={row[field]:.4g})"


def _none_meets(name, value, rows, field, best):
    return ValueError(f"--budget-{name} {value:g}: none meets it; the cheapest is "
                      f"{_describe(best(rows), field)}")


def _fastest(rows):
    return min(rows, key=lambda r: (r["ms_1t"], r["mflops"], r["bytes"]))


def _best_recall(rows):
    return max(rows, key=lambda r: (r["recall_val"], -r["ms_1t"]))


def per_budget(rows, budgets):
    """{budget name: chosen row} for each given budget on its own."""
    chosen = {}
    for name, field in COST_FIELDS.items():
        value = budgets.get(name)
        if value is None:
            continue
        try:
            chosen[name] = best_under_budget(rows, value, on=field, metric="recall_val")
        except ValueError:
            raise _none_meets(name, value, rows, field,
                              lambda rs: min(rs, key=lambda r: r[field])) from None
    if budgets.get("recall") is not None:
        ok = [r for r in rows if r["recall_val"] >= budgets["recall"]]
        if not ok:
            raise ValueError(f"--min-recall {budgets['recall']:g}: none meets it; the cheapest is "
                             f"the most accurate, {_describe(_best_recall(rows), 'recall_val')}")
        chosen["recall"] = _fastest(ok)
    return chosen


def overall(rows, budgets):
    """The row meeting every given budget (see the module docstring)."""
    ok = list(rows)
    for name, field in COST_FIELDS.items():
        if budgets.get(name) is not None:
            ok = [r for r in ok if r[field] <= budgets[name]]
    floor = budgets.get("recall")
    if floor is not None:
        ok = [r for r in ok if r["recall_val"] >= floor]
    if not ok:
        given = ", ".join(f"{n}={v:g}" for n, v in budgets.items() if v is not None)
        raise ValueError(f"budgets {given} together: none meets them all; the cheapest is "
                         f"{_describe(_fastest(rows), 'ms_1t')}; relax one budget")
    if floor is not None:
        return _fastest(ok)
    if not any(v is not None for v in budgets.values()):
        good = [r for r in ok if r["recall_val"] >= DEFAULT_RECALL]
        return _fastest(good) if good else _best_recall(ok)
    return _best_recall(ok)
