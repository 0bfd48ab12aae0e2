"""Choosing configurations: Pareto fronts, best-under-budget, and selection on validation.

A *row* is a dict describing one evaluated configuration, e.g.
``{"index": "adanns-ivf", "d_c": 16, "d_s": 64, "nprobe": 2, "flops": 3.1e6, "ms": 0.4,
"top1": 0.70}``. Costs (``x`` / ``on``: "flops", "bytes", "ms", ...) are lower-is-better and
metrics (``y`` / ``metric``: "top1", "map10", ...) higher-is-better; both must be finite reals.

- ``pareto_front``: the rows no other row dominates (cost <= and metric >=, one strictly).
- ``best_under_budget``: the best metric among rows whose cost is <= budget; ties go to the
  lower cost, then to the earlier row. No row within budget raises ``ValueError`` (a silent
  ``None`` would surface later as an unrelated error in a plotting or table loop).
- ``select_on_validation``: pick per budget on validation rows, then report that configuration's
  test metric, so the reported numbers are not tuned on the test split (the honest protocol for
  AdANNS's "best d for each budget" plots).
"""
import math
import numbers
from collections.abc import Mapping


def _value(row, field, i, what="rows"):
    if not isinstance(row, Mapping):
        raise TypeError(f"{what}[{i}] must be a dict, got {type(row).__name__}")
    if field not in row:
        raise ValueError(f"{what}[{i}] has no field {field!r}; its fields are {sorted(map(str, row))}")
    v = row[field]
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what}[{i}][{field!r}] must be a number, got {v!r} ({type(v).__name__})")
    if not math.isfinite(v):
        raise ValueError(f"{what}[{i}][{field!r}] must be a finite number, got {v!r}")
    return float(v)


def _budget(budget):
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(f"budget must be a number, got {budget!r} ({type(budget).__name__})")
    if math.isnan(budget):
        raise ValueError("budget is NaN; pass a number (math.inf for no limit)")
    return float(budget)


def pareto_front(rows, x="flops", y="top1"):
    """Rows not dominated in (lower `x`, higher `y`), sorted by `x` (ties keep input order).

    Rows with identical (x, y) do not dominate each other, so all of them are kept.
    Returns the same dict objects, not copies.
    """
    rows = list(rows)
    points = [(_value(r, x, i), _value(r, y, i)) for i, r in enumerate(rows)]
    order = sorted(range(len(rows)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], None
    for i in order:
        xi, yi = points[i]
        # In this order a row is dominated iff some earlier row has a higher y, or an equal y
        # at a lower x.
        if best is None or yi > best[1] or (yi == best[1] and xi == best[0]):
            front.append(rows[i])
            best = (xi, yi)
    return front


def _best_index(rows, budget, on, metric):
    budget = _budget(budget)
    best, best_key = None, None
    for i, row in enumerate(rows):
        cost, score = _value(row, on, i), _value(row, metric, i)
        if cost <= budget and (best_key is None or (-score, cost) < best_key):
            best, best_key = i, (-score, cost)
    if best is None:
        cheapest = min((_value(r, on, i) for i, r in enumerate(rows)), default=None)
        hint = "no rows were given" if cheapest is None else f"the cheapest row has {on}={cheapest:g}"
        raise ValueError(f"no row has {on} <= budget {budget:g} ({hint}); raise the budget")
    return best


def best_under_budget(rows, budget, on="flops", metric="top1"):
    """The row with the highest `metric` among those with ``row[on] <= budget``.

    Ties: lower `on` cost first, then the earlier row. Raises ValueError if no row fits.
    """
    rows = list(rows)
    return rows[_best_index(rows, budget, on, metric)]


def _key_of(row, key, i, what):
    fields = (key,) if isinstance(key, str) else tuple(key)
    if not fields:
        raise ValueError("key must name at least one field that identifies a configuration")
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{what}[{i}] lacks key field(s) {missing}")
    return tuple(row[f] for f in fields)


def _index_by_key(rows, key, what):
    index = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"{what}[{i}] must be a dict, got {type(row).__name__}")
        k = _key_of(row, key, i, what)
        if k in index:
            raise ValueError(f"{what} has two rows with key {k} (rows {index[k]} and {i}); "
                             f"add fields to `key` so it identifies one configuration")
        index[k] = i
    return index


def select_on_validation(rows_val, rows_test, budgets, on="flops", key=("config",), metric="top1"):
    """For each budget choose the best configuration on validation, report it on test.

    key: field name or tuple of field names identifying a configuration in both row sets
    (e.g. ``("d_c", "d_s", "nprobe")``). Returns one dict per budget, in budget order:
    ``{"budget", "key", "val_<on>", "val_<metric>", "test_<on>", "test_<metric>", "val_row",
    "test_row"}``. Raises ValueError if a budget fits no validation row, a key is duplicated, or
    the chosen configuration is missing from the test rows.
    """
    rows_val, rows_test = list(rows_val), list(rows_test)
    _index_by_key(rows_val, key, "rows_val")
    test_index = _index_by_key(rows_test, key, "rows_test")
    report = []
    for budget in budgets:
        i = _best_index(rows_val, budget, on, metric)
        chosen, k = rows_val[i], _key_of(rows_val[i], key, i, "rows_val")
        if k not in test_index:
            raise ValueError(f"configuration {k} chosen on validation for budget {budget:g} has no "
                             f"row in rows_test; evaluate it on the test split")
        j = test_index[k]
        test_row = rows_test[j]
        report.append({"budget": float(budget), "key": k,
                       f"val_{on}": _value(chosen, on, i, "rows_val"),
                       f"val_{metric}": _value(chosen, metric, i, "rows_val"),
                       f"test_{on}": _value(test_row, on, j, "rows_test"),
                       f"test_{metric}": _value(test_row, metric, j, "rows_test"),
                       "val_row": chosen, "test_row": test_row})
    return report
