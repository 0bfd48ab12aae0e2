"""Reproduce the MRL and AdANNS experiments on Fashion-MNIST, end to end.

    python -m experiments.reproduce [--preset small|full|tiny] [--out DIR] [--seed S] [--seeds N]
                                    [--train-jobs N]
                                    [--previous CLAIMS.json] [--force] [--dask ADDRESS|local:N]

Pipeline (each stage cached under DIR/cache/<stage> by a hash of its configuration, its inputs'
hashes and the source of the code it calls; see `experiments/reproduce/stage.py`):

    train_<model>_s<seed>   MLP encoders 784-h-h-D: MRL (separate heads), MRL-E (tied heads)
                            and one fixed-feature model per size d, for each seed of the preset
    exact_knn          exact top-10 at full dim of every model (every recall's reference)
    exp1_dims          linear top-1, 1-NN top-1, mAP@10, 10-recall@10 per size, with the SVD
                       and random-projection baselines                      (MRL Fig. 2/3)
    exp2_adaptive_cls  adaptive classification cascade vs FF                 (MRL §4.2.1)
    exp3_retrieval     adaptive retrieval (shortlist dim x re-rank dim) and funnels vs single-shot
    exp4_ivf           AdANNS-IVF grid vs rigid IVF (MR d_c = d_s, FF models) and AdANNS-IVF-D
                                                                              (AdANNS Fig. 2)
    exp5_opq           AdANNS-OPQ vs OPQ on rigid / full MR, IVFOPQ, PQ-then-re-rank
    exp7_hnsw          AdANNS-HNSW (graph at d_c, re-score at d_s) vs rigid HNSW on MR and FF
    exp6_budget        compute-aware selection on a validation half, reported on the test half
                       (candidates: the rows of exp. 3, 4 and 7 for MFLOPs, exp. 5 for bytes)
    exp8_quant         binary / 4bit / int8 / float Matryoshka prefixes and binary funnels vs the
                       rigid precision at full D (recall vs bytes/vector and ms/query)
    figures            one PNG per experiment

Outputs under --out: report.md (tables as mean ± sd over seeds, figures, the claims table with
verdicts computed by `claims.py` with the rules of `rules.py`, environment, stage wall times),
claims.json, tables/<experiment>.csv (one row per configuration and seed),
figures/<experiment>.png, and cache/<stage>/ (models, embeddings, rows with per-query outcomes,
manifests). A rerun recomputes only the stages whose configuration, inputs or code changed
(stderr says "cached" for the others); --force recomputes everything.

--dask ADDRESS (a scheduler, "tcp://host:8786") or --dask local:N (a LocalCluster of N worker
processes on this machine): the indices of exp4 and exp5 are built and searched as one Dask task
each (`adanns_ref.distributed.map_configs`). The tables are those of the serial run except the
measured ms/query, which on a shared cluster is not comparable with a quiet serial run. Where
the run executed is in the report's environment section and in no stage's cache key.

Presets: `tiny` (a few hundred embedded images, 1 epoch, 1 seed: seconds, for the end-to-end
test), `small` (the embedded 6,000 / 1,000 subset, 2 seeds, offline), `full` (60,000 / 10,000,
3 seeds, D = 64), `paper` (the task with headroom: 60,000 / 10,000 Fashion-MNIST composites of
1,000 classes, `mrl_ref.composites`; 5 seeds, the papers' D = 2048 and nesting 8..2048, GELU
embedding layer, trimmed grids; budget estimate in the PRESETS comment).
Seeds are --seed, --seed + 1, ... Database = train split, queries = test split. The
test queries are split once, seeded, into halves A ("val") and B ("test"); wherever a
configuration is chosen it is chosen on one half and scored on the other (the claims do it both
ways: cross-fitting).
"""
import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

from adanns_ref.core.persist import atomic_write_text
from adanns_ref.distributed import close, connect

from . import ann, geometry, graph, mrl, plots, quant, report as report_md
from .rows import attach_evidence
from .verdicts import claims as claim_rules
from .stage import Pipeline, StageResult, log

# Training recipe: SGD momentum 0.9, weight decay 1e-4, label smoothing 0.1, linear warm-up then
# linear decay (the MRL recipe, `mrl_ref.train`), identical for MRL, MRL-E and every FF model.
# The embedding is a post-ReLU MLP layer, and a unit that dies early (negative pre-activation on
# every input) is lost for good; the first Matryoshka dims receive the gradients of every head,
# so they die first. On the small subset, peak lr 0.05 with batch 128 kept the first dims alive
# for seeds 0, 1 and 2, while batch 256 (fewer, larger steps) lost dim 1 at seed 0.
PRESETS = {
    "tiny": dict(
        n_seeds=1,
        subset="embedded", per_class=(40, 20), nesting=[2, 4, 8, 16], hidden=[64, 64],
        epochs=1, batch_size=64, optimizer="sgd", lr=0.05, warmup=0,
        shortlists=[20, 50], funnel_shortlists=[50, 25, 10], retrieval_k=10,
        ivf_nlists=[8], ivf_nprobes=[1, 2, 4], opq_budgets=[2, 4, 8], opq_niter=2,
        ivfpq_nlist=4, ivfopq_budgets=[2, 4], ivfopq_dcs=[4], ivfopq_nprobes=[1, 2],
        pq_train_size=None,
        quant_precisions=["binary", "4bit", "int8", "float"], quant_max_d=None,
        quant_oversamples=[2, 5], quant_ff=True,
        hnsw_dims=[4, 16], hnsw_ds=[4, 16], hnsw_M=8, hnsw_efc=16, hnsw_efs=[8, 32]),
    "small": dict(
        n_seeds=2,
        subset="embedded", per_class=None, nesting=[2, 4, 8, 16, 32, 64], hidden=[256, 256],
        epochs=20, batch_size=128, optimizer="sgd", lr=0.05, warmup=2,
        shortlists=[50, 100, 200], funnel_shortlists=[200, 100, 50, 25, 10], retrieval_k=10,
        ivf_nlists=[32, 64], ivf_nprobes=[1, 2, 4, 8], opq_budgets=[4, 8, 16], opq_niter=4,
        ivfpq_nlist=32, ivfopq_budgets=[8, 16], ivfopq_dcs=[8], ivfopq_nprobes=[1, 4],
        pq_train_size=None,
        quant_precisions=["binary", "4bit", "int8", "float"], quant_max_d=None,
        quant_oversamples=[4, 10], quant_ff=True,
        hnsw_dims=[8, 16, 64], hnsw_ds=[8, 16, 64], hnsw_M=16, hnsw_efc=40, hnsw_efs=[16, 64]),
    "full": dict(
        n_seeds=3,
        subset=None, per_class=None, nesting=[2, 4, 8, 16, 32, 64], hidden=[256, 256],
        epochs=10, batch_size=256, optimizer="sgd", lr=0.05, warmup=1,
        shortlists=[50, 100, 200, 400], funnel_shortlists=[200, 100, 50, 25, 10], retrieval_k=10,
        # Budget (3 seeds, idle): with nlist {128, 256}, 3 timed repeats, OPQ budgets up to 32
        # bytes, 10 OPQ iterations on 16,384 rows, exp4 took 689 s and exp5 ~540 s per seed
        # (OPQ training dominates: 25 s for one M = 16 index), ~52 min in all. Trimmed to one
        # nlist (256), 2 timed repeats, M <= 16 and 4 OPQ iterations on 8,192 rows (8.5 s per
        # M = 16 index): exp4 ~265 s, exp5 ~125 s per seed, ~25 min in all.
        # timing: 5 repeats on 1,000 queries after a full untimed search, every seed (issue 24)
        ivf_nlists=[256], ivf_nprobes=[1, 2, 4, 8, 16], timing_repeats=5, opq_budgets=[4, 8, 16],
        opq_niter=4, ivfpq_nlist=256, ivfopq_budgets=[8, 16], ivfopq_dcs=[8],
        ivfopq_nprobes=[1, 4, 16], pq_train_size=8192,
        # exp8: 4bit left out (an SQ4 scan costs as much as an SQ8 one; the int8 grid is ~10 s a seed)
        quant_precisions=["binary", "int8", "float"], quant_max_d=None, quant_oversamples=[4, 10],
        quant_ff=True,
        hnsw_dims=[8, 16, 64], hnsw_ds=[8, 16, 64], hnsw_M=16, hnsw_efc=40, hnsw_efs=[16, 64]),
    # The papers' dims: D = 2048, nesting 8..2048, every claim judged where the papers report it,
    # on a task with headroom (issue 24): Fashion-MNIST composites (`mrl_ref.composites`: 3 images
    # side by side, label = the class triple, 1,000 classes of 60 database items each; 60,000 /
    # 10,000 composites of the train / test images), MLP 2352-256-256-2048 with a GELU embedding
    # layer (`mrl_ref.nn`: full rank; the earlier linear layer had rank <= 257, so D = 2048 was
    # nominal), 5 training seeds.
    # Headroom, measured (FF-8 vs FF-2048, seed 0, 60,000 / 10,000 composites, test queries vs the
    # train database; beside other jobs, accuracies are load-independent): R-precision / mAP@R
    #   lr 0.05, 5 epochs: FF-8 7.56 / 2.30 %, FF-2048 24.55 / 12.99 %: 17.0 / 10.7 pp
    #   lr 0.05, 3 epochs: FF-8 5.32 / 1.28 %, FF-2048 18.57 /  8.57 %: 13.3 /  7.3 pp
    #   lr 0.05, 3 epochs: FF-8 5.32 / 1.28 %, FF-2048 18.57 /  8.57 %: 13.3 /  7.3 pp  <- chosen
    #   lr 0.1,  3 epochs: FF-8 7.90 / 2.43 %, FF-2048 25.02 / 13.28 %: 17.1 / 10.9 pp
    # lr 0.1 was the first choice, but it is too high for MRL-E (9 tied heads add their gradients
    # on the first columns of one weight matrix): in the first paper run, MRL-E diverged at seed
    # 1 (epoch loss 160, then 3,492; chance accuracy after 3 epochs), overflowed at seed 4, and
    # reached only 4.6 / 21.5 / 19.1 % train top-1 at 2048 for seeds 0, 2, 3 (MRL: 40.7 %). At lr
    # 0.05, seeds 1 and 4 train to 35.6 / 36.0 %. The recipe is shared, so every model uses 0.05.
    # (6,000 composites, 6 per class, 5 epochs at lr 0.05: 5.2 / 3.1 pp: both models near chance,
    # too few items per class to learn 1,000 classes; the task needs the full 60,000.)
    #
    # Budget (<= 75 min idle on 2 cores), MEASURED on 2026-12-07, idle, `--preset paper
    # --train-jobs 2` (stage wall times of that run):
    #   train          40 models (5 seeds x MRL 92, MRL-E 104, FF-2048 ~50, FF-256 ~15, FF-8..64
    #                  ~9 s each), 2 worker processes side by side: 1,513 s of stage time in
    #                  ~18 min of wall time (serially it would be ~25 min)
    #   exact_knn      215 s     geometry   62 s     exp1_dims 344 s    exp2_adaptive_cls 48 s
    #   exp3_retrieval 447 s     exp4_ivf  297 s     exp5_opq  524 s    exp7_hnsw         57 s
    #   exp8_quant   1,016 s     exp9_pruning 264 s  figures, claims and report ~10 s
    #   the whole invocation: 4,444 s = 74.1 min (peak memory ~15 GB of 23 GB)
    # Trimmed before that run (symmetrically): OPQ budgets 8 / 16 against rigid 16 / 32 (the
    # 32-vs-64-byte pair dropped on both sides) and Panorama on 1,000 of the 10,000 queries.
    # Estimated beforehand: 91 min serially (training 1,470 s, exp5 1,130 s and exp8 720 s the
    # largest); exp8 and exp3 took more than estimated (int8 scans at 2048), exp4 and exp5 less.
    "paper": dict(
        n_seeds=5,
        task="fmnist3", composites=(60000, 10000), data_seed=0,
        subset=None, per_class=None, nesting=[8, 16, 32, 64, 128, 256, 512, 1024, 2048],
        hidden=[256, 256], embedding="gelu", ff_sizes=[8, 16, 32, 64, 256, 2048],
        baseline_dims=[8, 16, 32, 64, 128, 256],
        epochs=3, batch_size=256, optimizer="sgd", lr=0.05, warmup=1,
        shortlists=[200], adaptive_dims=[8, 16, 32, 64], rerank_dims=[2048],
        funnel_dims=[8, 16, 32, 64, 128, 2048], funnel_shortlists=[200, 100, 50, 25, 10],
        retrieval_k=10,
        # exp4, symmetric (issue 24: the same d_s up to D for every d_c; the claims refuse a grid
        # with holes): d_c = d_s in {8, 32, 256, 2048}, nprobe {1, 4} (the paper's 1-4). Scan
        # work per seed ~ 4 indices x (8 + 32 + 256 + 2048) dims x 5 probes, about half the
        # previous grid's (5 indices x d_s <= 256 x 21 probes + d_s = 2048 on one), plus 5 timed
        # repeats on 1,000 queries (+50 %): NOT yet measured idle. IVF-D (first seed, no claim
        # reads it) at d_s 32 / 256
        ivf_nlists=[256], ivf_nprobes=[1, 4], ivf_dcs=[8, 32, 256, 2048],
        ivf_dss=[8, 32, 256, 2048], ivf_d_dss=[32, 256],
        timing_repeats=5,
        # exp5: AdANNS-OPQ at 8 / 16 / 32 bytes against rigid OPQ on FF-2048 at twice the bytes
        # (64 vs 128 bytes left out: ADC over 128 tables); d in {16, 64, 256} (at 8 bytes d = 8
        # is PQ with one dim per byte); IVFOPQ at 16 bytes, routing at d_c = 8 (< d_s) and 64
        # (>= d_s for d_s <= 64). Measured: ~10 min a seed with sgesvd at 2048 (55 s a call);
        # with gesdd 283 s a seed at d in {16, 32, 64, 256} (ADC of 10,000 queries at 32 bytes:
        # 8 s an index), so d = 32 went too: 451 s for both seeds
        # (budgets 8 / 16 against rigid 16 / 32: the 32-vs-64-byte pair left out on both sides,
        # ADC at 32 and 64 bytes being the dearest searches of the grid, to fit 75 minutes)
        opq_budgets=[8, 16], opq_ff_budgets=[16, 32],
        opq_dims=[16, 64, 256], opq_niter=2,
        ivfpq_nlist=256, ivfopq_budgets=[16], ivfopq_dcs=[8, 64], ivfopq_nprobes=[1, 4, 16],
        pq_train_size=4096,
        # exp8: SQ only up to d = 64, no FF rows, binary funnels at oversample 10 only: 94 s a
        # seed with int8 / float at 128 and oversample 4. `quant.quant_grid` adds int8@2048 (the
        # second byte budget the claim needs) and the largest prefix of each precision within
        # each budget (int8@256 / 1024, float@512): int8 at 2048 ~80 s a seed, NOT yet measured
        quant_precisions=["binary", "int8", "float"], quant_max_d=64, quant_oversamples=[10],
        quant_ff=False,
        # exp7: graphs at 32 and 256 (MR and FF; build distance work grows with the dim, one at
        # 2048 alone would take ~40 s), AdANNS-HNSW re-scores the d = 32 graph at 256: rigid
        # graphs exist at every dim AdANNS-HNSW uses (issue 24; re-scoring at 512 / 2048 would
        # need rigid graphs there)
        hnsw_dims=[32, 256], hnsw_ds=[32, 256], hnsw_M=16, hnsw_efc=40, hnsw_efs=[16, 64],
        # exp9: Panorama on 1,000 of the 10,000 test queries (`quant.pruning_queries`)
        pruning_queries=1000),
}


def _stratified_first(y, per_class):
    """Row indices of the first `per_class` rows of every class, in file order."""
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:per_class]] = True
    return np.flatnonzero(keep)


def load_data(cfg):
    """(X_train, y_train, X_test, y_test): float32 (n, 784) in [0, 1], int64 labels; on task
    "fmnist3" the composites of `mrl_ref.composites` (n, 2352), cfg["composites"] = (n_train,
    n_test) drawn from cfg["subset"]'s images with cfg["data_seed"] (default 0)."""
    from mrl_ref.composites import load_fmnist3
    from mrl_ref.data import load_fashion_mnist

    if geometry.task(cfg) == "fmnist3":
        pair = cfg.get("composites")
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(type(v) is int and v >= 1 for v in pair)):
            raise ValueError(f"task 'fmnist3' needs composites=(n_train, n_test), two ints >= 1, got {pair!r}")
        n_tr, n_te = pair
        seed = cfg.get("data_seed", 0)
        Xtr, ytr = load_fmnist3("train", n=n_tr, seed=seed, subset=cfg["subset"])
        Xte, yte = load_fmnist3("test", n=n_te, seed=seed, subset=cfg["subset"])
        return Xtr, ytr, Xte, yte
    Xtr, ytr = load_fashion_mnist("train", subset=cfg["subset"], flatten=True)
    Xte, yte = load_fashion_mnist("test", subset=cfg["subset"], flatten=True)
    if cfg["per_class"] is not None:
        itr, ite = (_stratified_first(y, n) for y, n in ((ytr, cfg["per_class"][0]),
                                                          (yte, cfg["per_class"][1])))
        Xtr, ytr, Xte, yte = Xtr[itr], ytr[itr], Xte[ite], yte[ite]
    return Xtr, ytr.astype(np.int64), Xte, yte.astype(np.int64)


def split_queries(n, seed):
    """Seeded split of the n test queries into (validation, test) index halves, each sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def make_figures(pipe, preset, names, task="fmnist"):
    """One PNG per experiment; a stage of its own so that restyling never retrains anything."""
    where = "Fashion-MNIST" if task == "fmnist" else "Fashion-MNIST composites (1,000 classes)"

    def compute(ctx):
        files = []
        for name in names:
            plot, title = plots.FIGURES[name]
            path = os.path.join(pipe.out, "figures", f"{name}.png")
            plot(ctx.inputs[name].tables, path, pipe.hashes[name], f"{title} - {where} ({preset} preset)")
            files.append(path)
        return StageResult(files=files)

    conf = {"names": names, "preset": preset}
    if task != "fmnist":  # absent for Fashion-MNIST: the presets before the option keep their cache
        conf["task"] = task
    return pipe.run("figures", conf, compute, deps=names,
                    code=["experiments.reproduce.plots"])


_WORKER_DATA = {}


def _worker_init(cfg):
    """A training worker loads the data once (the same arrays as the parent: `load_data`). On
    Linux it asks the kernel for SIGTERM when the parent dies, so killing a run does not leave
    workers training on (Ctrl-C reaches them through the process group anyway)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    _WORKER_DATA["data"] = load_data(cfg)


def _worker_train(out, cfg, spec, seed, force):
    """Train one model into the stage cache under `out`; returns its stage name."""
    pipe = Pipeline(out, force=force)
    return mrl.train_model(pipe, cfg, _WORKER_DATA["data"], spec, seed)["stage"]


def train_in_workers(pipe, cfg, jobs):
    """Train every (model, seed) of the preset in `jobs` spawned worker processes, largest models
    first, into the stage cache that `mrl.train_all` then reads. Each training runs on one BLAS
    thread in a process of its own, as in a serial run, so the weights are the same bits; the
    stage wall times are measured beside the other workers. The stages become `pipe.fresh`, so
    --force does not retrain them a second time."""
    import concurrent.futures
    import multiprocessing

    tasks = [(spec, seed) for spec in mrl.model_specs(cfg) for seed in cfg["seeds"]]
    log(f"training {len(tasks)} models in {jobs} worker processes")
    with concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(cfg,)) as pool:
        futures = [pool.submit(_worker_train, pipe.out, cfg, spec, seed, pipe.force)
                   for spec, seed in tasks]
        for f in concurrent.futures.as_completed(futures):
            pipe.fresh.add(f.result())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="tiny: seconds (tests); small: embedded subset, ~5 min; full: all of "
                             "Fashion-MNIST, < 30 min; paper: 60,000 Fashion-MNIST composites (1,000 "
                             "classes) at the papers' D = 2048, 5 seeds, see the PRESETS comment "
                             "(default: small)")
    parser.add_argument("--out", default="results", help="output directory (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of training seeds (default: the preset's, tiny 1, small 2, full 3, "
                             "paper 5)")
    parser.add_argument("--previous", default=None,
                        help="claims.json of an earlier run, for the report's list of changed "
                             "verdicts (default: DIR/claims.json if it exists)")
    parser.add_argument("--force", action="store_true", help="recompute every stage, ignoring the cache")
    parser.add_argument("--dask", metavar="ADDRESS|local:N", default=None,
                        help="run exp4 / exp5 configurations as tasks on a Dask cluster (a "
                             "scheduler address, or local:N worker processes); needs [dask]")
    parser.add_argument("--train-jobs", type=int, default=1, metavar="N",
                        help="train the models in N worker processes, one BLAS thread each (same "
                             "weights as serial; default 1: in-process, serial)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    load_at_start = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    cfg = dict(PRESETS[args.preset], seed=args.seed)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    cfg["seeds"] = [args.seed + i for i in range(args.seeds or cfg["n_seeds"])]
    cfg["D"] = cfg["nesting"][-1]
    if args.train_jobs < 1:
        parser.error(f"--train-jobs must be >= 1, got {args.train_jobs}")
    pipe = Pipeline(args.out, force=args.force)
    client, where = None, "in-process, serial"
    if args.dask is not None:
        try:
            client, where = connect(args.dask)
        except (ValueError, ImportError, OSError) as exc:
            parser.error(f"--dask {args.dask}: {exc}")
    log(f"preset {args.preset}, output {pipe.out}, {where}")
    t0 = time.perf_counter()
    data = load_data(cfg)
    log(f"data: {len(data[0])} train / {len(data[2])} test images in {time.perf_counter() - t0:.1f} s")
    val_idx, test_idx = split_queries(len(data[2]), args.seed)

    if args.train_jobs > 1:
        train_in_workers(pipe, cfg, args.train_jobs)
    models = mrl.train_all(pipe, cfg, data)
    mrl.exact_knn(pipe, cfg, models, data)
    geometry.geometry_stage(pipe, cfg, models)
    mrl.exp1_dims(pipe, cfg, data, models, val_idx, test_idx)
    mrl.exp2_adaptive_cls(pipe, cfg, data, models, val_idx, test_idx)
    mrl.exp3_retrieval(pipe, cfg, data, models, val_idx, test_idx)
    try:  # (an error before this leaves a LocalCluster to Dask's own clean-up at exit)
        ann.exp4_ivf(pipe, cfg, data, models, val_idx, test_idx, client=client)
        ann.exp5_opq(pipe, cfg, data, models, val_idx, test_idx, client=client)
    finally:
        if client is not None:
            close(client)
    graph.exp7_hnsw(pipe, cfg, data, models, val_idx, test_idx)   # before exp6: its candidates
    ann.exp6_budget(pipe, cfg, val_idx, test_idx)
    quant.exp8_quant(pipe, cfg, data, models, val_idx, test_idx)
    quant.exp9_pruning(pipe, cfg, data, models, val_idx, test_idx)
    names = list(plots.FIGURES)
    make_figures(pipe, args.preset, names, geometry.task(cfg))

    tables = {n: pipe.results[n].tables[n] for n in names}
    tables["exp4_baselines"] = pipe.results["exp4_ivf"].tables["exp4_baselines"]
    tables["geometry"] = pipe.results["geometry"].tables["geometry"]
    infos = {n: pipe.results[n].info for n in names}
    tables["exp9_pruning"] = pipe.results["exp9_pruning"].tables["exp9_pruning"]
    infos["exp9_pruning"] = pipe.results["exp9_pruning"].info
    evidence = {n: attach_evidence(pipe.results[n].tables[n], pipe.results[n].arrays) for n in names}
    ctx = {"seeds": cfg["seeds"], "folds": (val_idx, test_idx), "nq": len(data[2]),
           "nesting": cfg["nesting"], "ivfpq": ann.ivfpq_available()}
    evidence["exp9_pruning"] = attach_evidence(pipe.results["exp9_pruning"].tables["exp9_pruning"],
                                               pipe.results["exp9_pruning"].arrays)
    claims = claim_rules.all_claims(evidence, ctx) + [claim_rules.judge_claim(quant.PRUNING_CLAIM, evidence, ctx)]
    layer = {"linear": "linear (the last layer's pre-activation, rank <= last hidden + 1)",
             "gelu": "GELU of the last layer (exact erf form, full rank)"}.get(mrl.embedding(cfg), "post-ReLU")
    meta = {"preset": args.preset, "seeds": cfg["seeds"], "D": cfg["D"], "nesting": cfg["nesting"],
            "task_title": "Fashion-MNIST" if geometry.task(cfg) == "fmnist" else "Fashion-MNIST composites",
            "items": "images" if geometry.task(cfg) == "fmnist" else "composites",
            "encoder": f"MLP {'-'.join(str(h) for h in [data[0].shape[1], *cfg['hidden'], cfg['D']])}, "
                       f"embedding layer {layer}; {len(cfg['seeds'])} training seeds per model",
            "n_train": len(data[0]), "n_test": len(data[2]),
            "task_lines": geometry.header_lines(geometry.task(cfg), tables["geometry"],
                                                tables["exp1_dims"], cfg["D"]),
            "command": "python -m experiments.reproduce " + shlex.join(sys.argv[1:] if argv is None else argv),
            "total_wall_s": time.perf_counter() - t_start, "load_at_start": load_at_start,
            "where": where}
    meta["setup"] = f"{meta['task_title']}, {meta['encoder']}"
    previous = args.previous or os.path.join(pipe.out, "claims.json")
    changed = None
    if os.path.exists(previous):
        with open(previous, encoding="utf-8") as f:
            before = json.load(f)
        changed = claim_rules.changes(before["claims"], claims)
        meta["previous_setup"] = before.get("setup", "")
    atomic_write_text(os.path.join(pipe.out, "claims.json"),
                      json.dumps({"preset": args.preset, "setup": meta["setup"], "claims": claims}, indent=1))
    report = os.path.join(pipe.out, "report.md")
    report_md.write_report(report, meta, tables, claims, pipe.timings, infos, changed)
    for c in claims:
        log(f"claim {c['id']}: {c['verdict']} (control: {c.get('control_verdict', '-')})")
    log(f"report written to {report} ({time.perf_counter() - t_start:.1f} s in total)")
    return 0

