"""Evaluating Matryoshka representations per nesting size, adaptively, and through funnels.

For a model with nesting M = (m_1 < ... < m_G = D), embeddings of a database (train split,
labels l) and of queries (test split, labels y):

- linear top-1 at m_g: accuracy of argmax(logits_g), the head trained on z[:, :m_g];
- 1-NN top-1 and mAP@10 at d: exact search (`adanns_ref.knn_search`, squared L2) on the
  re-normalised prefixes z_d (`adanns_ref.truncate.prefix`: normalise at D, truncate,
  normalise again); metrics from `adanns_ref.evaluation.metrics` (mAP mode "standard" divides AP by
  min(k, n_rel), "adanns" by k as the original notebooks did);
- adaptive classification (SPEC §7): a cascade over sizes; at size g predict argmax(logits_g)
  if max softmax(logits_g) > t_g, else move on to g+1 (the last size always predicts).
  Thresholds t_g come from a held-out split: for each consecutive pair (g, g+1) the two-level
  cascade's held-out accuracy is evaluated over the grid linspace(0.1, 1, 100) and the best
  t_g kept (ties -> the smallest t, i.e. the cheaper cascade), as in the MRL repo's cascade
  notebook. Reported: accuracy and expected dim E[m_exit] on the evaluation split;
- adaptive retrieval and funnels: `adanns_ref.funnel.funnel_search(db, q, stages)` with its
  cost model d_0 * N + sum_i d_i * k_{i-1} FLOPs per query, reported in MFLOPs.
"""
import numpy as np

from adanns_ref.core.cost import exact_flops
from adanns_ref.core.truncate import prefix
from adanns_ref.core.validate import as_float32_matrix, as_int, as_labels
from adanns_ref.evaluation import metrics
from adanns_ref.funnel import funnel_search
from adanns_ref.search.knn import knn_search

from .heads import check_nesting

THRESHOLD_GRID = np.linspace(0.1, 1.0, 100)


def _check_logits(logits_per_size, name="logits"):
    if not isinstance(logits_per_size, (list, tuple)) or not logits_per_size:
        raise ValueError(f"{name} must be a non-empty list of (n, C) arrays, one per nesting size")
    arrays = [as_float32_matrix(lg, f"{name}[{g}]", min_rows=1) for g, lg in enumerate(logits_per_size)]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{name}: all sizes need the same (n, C) shape, got {[a.shape for a in arrays]}")
    return arrays


def _softmax_confidence(logits):
    """max_c softmax(z)_c per row, in float64 (float32 logits near ties would round to 1)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)


def linear_accuracy(logits_per_size, y):
    """Top-1 of argmax(logits_g) per size -> list of G floats."""
    arrays = _check_logits(logits_per_size)
    y = as_labels(y, "y", arrays[0].shape[0])
    return [float(np.mean(a.argmax(axis=1) == y)) for a in arrays]


def knn_retrieval(db_emb, db_labels, q_emb, q_labels, dims, k=10, mode="standard"):
    """1-NN top-1 and mAP@k at each prefix dim -> list of dicts (dim, top1, map@k, mflops).

    db_emb (N, D), q_emb (nq, D): full embeddings (float32 after conversion). Exact search on
    re-normalised prefixes; mflops = d * N / 1e6 per query (`cost.exact_flops`).
    """
    db = as_float32_matrix(db_emb, "db_emb", min_rows=1)
    q = as_float32_matrix(q_emb, "q_emb", d=db.shape[1], min_rows=1)
    db_labels = as_labels(db_labels, "db_labels", db.shape[0])
    q_labels = as_labels(q_labels, "q_labels", q.shape[0])
    k = as_int(k, "k", 1)
    rows = []
    for d in check_nesting(dims):
        _, I = knn_search(prefix(q, d), prefix(db, d), k, "l2")
        rows.append({"dim": d, "top1": metrics.top1_accuracy(I, db_labels, q_labels),
                     f"map@{k}": metrics.map_at_k(I, db_labels, q_labels, k, mode),
                     "mflops": exact_flops(d, db.shape[0]) / 1e6})
    return rows


def _cascade(confidence, thresholds):
    """Exit index per example: the first g with confidence[g] > t_g (last size otherwise)."""
    G, n = confidence.shape
    exit_at = np.full(n, G - 1)
    undecided = np.ones(n, dtype=bool)
    for g, t in enumerate(thresholds):
        stop = undecided & (confidence[g] > t)
        exit_at[stop] = g
        undecided &= ~stop
    return exit_at


def fit_adaptive_thresholds(logits_per_size, y, grid=THRESHOLD_GRID):
    """Thresholds t_1..t_{G-1} from held-out logits (one per consecutive pair of sizes)."""
    arrays = _check_logits(logits_per_size, "holdout logits")
    y = as_labels(y, "y", arrays[0].shape[0])
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"grid must be a non-empty 1-D array of finite thresholds, got {grid!r}")
    correct = np.stack([a.argmax(axis=1) == y for a in arrays])
    thresholds = []
    for g in range(len(arrays) - 1):
        confident = _softmax_confidence(arrays[g])[None, :] > grid[:, None]  # (T, n)
        accuracy = np.where(confident, correct[g], correct[g + 1]).mean(axis=1)
        thresholds.append(float(grid[int(np.argmax(accuracy))]))  # first maximum = smallest t
    return np.array(thresholds)


def adaptive_classify(logits_per_size, nesting, thresholds):
    """Cascade predictions -> (pred int64 (n,), dim used per example int64 (n,))."""
    arrays = _check_logits(logits_per_size)
    nesting = check_nesting(nesting)
    if len(nesting) != len(arrays):
        raise ValueError(f"{len(arrays)} logits arrays but nesting has {len(nesting)} sizes")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (len(arrays) - 1,):
        raise ValueError(f"need {len(arrays) - 1} thresholds (one per consecutive pair), got shape {thresholds.shape}")
    confidence = np.stack([_softmax_confidence(a) for a in arrays])
    predictions = np.stack([a.argmax(axis=1) for a in arrays])
    exit_at = _cascade(confidence, thresholds)
    pred = predictions[exit_at, np.arange(exit_at.size)]
    return pred.astype(np.int64), np.asarray(nesting, dtype=np.int64)[exit_at]


def adaptive_classification(holdout_logits, holdout_y, eval_logits, eval_y, nesting, grid=THRESHOLD_GRID):
    """Fit thresholds on the held-out split, report on the evaluation split.

    Returns dict: accuracy, expected_dim (mean m at exit), thresholds (G-1,), exit_fraction
    (share of examples exiting at each size), and for comparison accuracy_at_full (size D).
    """
    thresholds = fit_adaptive_thresholds(holdout_logits, holdout_y, grid)
    arrays = _check_logits(eval_logits, "eval logits")
    y = as_labels(eval_y, "eval_y", arrays[0].shape[0])
    pred, dims = adaptive_classify(arrays, nesting, thresholds)
    nesting = check_nesting(nesting)
    return {"accuracy": float(np.mean(pred == y)), "expected_dim": float(dims.mean()),
            "thresholds": [float(t) for t in thresholds],
            "exit_fraction": [float(np.mean(dims == m)) for m in nesting],
            "accuracy_at_full": float(np.mean(arrays[-1].argmax(axis=1) == y))}


def default_funnels(nesting):
    """The MRL paper's shapes on our sizes: adaptive retrieval (m_2 -> D, shortlist 200 -> 10)
    and a funnel over the last four sizes below D with shortlists 200, 100, 50, 25, then (D, 10)."""
    nesting = check_nesting(nesting)
    below = nesting[:-1]
    if not below:
        return []
    first = below[1] if len(below) > 1 else below[0]
    funnels = [[(first, 200), (nesting[-1], 10)]]
    steps = below[-4:]
    if len(steps) > 1:
        funnels.append([(d, k) for d, k in zip(steps, (200, 100, 50, 25)[-len(steps):])] + [(nesting[-1], 10)])
    return funnels


def funnel_retrieval(db_emb, db_labels, q_emb, q_labels, stages, k=10, mode="standard"):
    """top-1, mAP@k and MFLOPs/query of one funnel through `adanns_ref.funnel.funnel_search`."""
    db = as_float32_matrix(db_emb, "db_emb", min_rows=1)
    q = as_float32_matrix(q_emb, "q_emb", d=db.shape[1], min_rows=1)
    db_labels = as_labels(db_labels, "db_labels", db.shape[0])
    q_labels = as_labels(q_labels, "q_labels", q.shape[0])
    _, I, flops = funnel_search(db, q, stages)
    k = as_int(k, "k", 1)
    if I.shape[1] < k:
        raise ValueError(f"the last stage keeps {I.shape[1]} results; mAP@{k} needs k >= {k} there")
    return {"stages": [list(map(int, s)) for s in stages], "top1": metrics.top1_accuracy(I, db_labels, q_labels),
            f"map@{k}": metrics.map_at_k(I, db_labels, q_labels, k, mode), "mflops": float(flops) / 1e6}


def evaluate_model(model, X_db, y_db, X_q, y_q, holdout_fraction=0.2, funnels=None, k=10,
                   mode="standard", seed=0):
    """Everything above for one trained model (database = X_db, queries = X_q).

    Per size: linear top-1 (all queries), 1-NN top-1 and mAP@k. Adaptive classification
    (G >= 2): a seeded random `holdout_fraction` of the queries fits the thresholds, the rest
    is reported. Funnels: `funnels` (list of stage lists; None -> `default_funnels`).
    Returns a JSON-able dict.
    """
    if not 0.0 < float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    Z_db, Z_q = model.embed(X_db), model.embed(X_q)
    y_q = as_labels(y_q, "y_q", Z_q.shape[0])
    logits = model.logits(X_q)
    rows = knn_retrieval(Z_db, y_db, Z_q, y_q, model.nesting, k, mode)
    for row, acc in zip(rows, linear_accuracy(logits, y_q)):
        row["linear_top1"] = acc
    report = {"kind": model.kind, "nesting": list(model.nesting), "per_size": rows,
              "adaptive_classification": None, "funnels": []}
    if len(model.nesting) >= 2:
        order = np.random.default_rng(as_int(seed, "seed", 0)).permutation(Z_q.shape[0])
        n_hold = int(round(float(holdout_fraction) * Z_q.shape[0]))
        if not 0 < n_hold < Z_q.shape[0]:
            raise ValueError(f"holdout_fraction={holdout_fraction} leaves an empty split of {Z_q.shape[0]} queries")
        hold, rest = order[:n_hold], order[n_hold:]
        report["adaptive_classification"] = adaptive_classification(
            [lg[hold] for lg in logits], y_q[hold], [lg[rest] for lg in logits], y_q[rest], model.nesting)
        for stages in (default_funnels(model.nesting) if funnels is None else funnels):
            report["funnels"].append(funnel_retrieval(Z_db, y_db, Z_q, y_q, stages, k, mode))
    return report
