"""Command line of `python -m adanns_ref.tune` (see `run.tune`). Exit code 2 on bad input or a
budget no configuration meets (after writing the reports), 130 on Ctrl-C, with the reason on
stderr in one line."""
import argparse
import sys

from ..distributed import close, connect
from . import latency
from .run import BudgetError, load_inputs, rechoose, tune

PROG = "python -m adanns_ref.tune"


def _dims(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dims {text!r}: give comma-separated integers, "
                                         f"e.g. 8,16,32") from None


def parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Find the best Matryoshka prefix and index for your embeddings under a "
                    "budget, timed on its faiss form, and export it to faiss. With no input: the "
                    "embedded Fashion-MNIST MRL embeddings.")
    p.add_argument("--base", help="database vectors (.npy .fbin .fvecs ...; memory-mapped)")
    p.add_argument("--queries", help="query vectors, same dimension as --base")
    p.add_argument("--hdf5", help="an ann-benchmarks file (train / test / neighbors); its "
                                  "'distance' attribute sets the metric")
    p.add_argument("--metric", choices=("l2", "ip", "cosine"), default=None,
                   help="l2: squared L2 on the vectors as they are; ip: inner product as it is; "
                        "cosine: both sides normalised (default: the HDF5 file's distance, "
                        "else l2)")
    p.add_argument("--normalize", action="store_true",
                   help="normalise vectors and each prefix to unit norm (ranks as cosine)")
    p.add_argument("--pca", action="store_true",
                   help="tune on a PCA rotation of the base (for embeddings that are not "
                        "Matryoshka-like); the export applies it as a faiss PCAMatrix")
    p.add_argument("--k", type=int, default=10, help="neighbours per query: recall is k-recall@k (default: 10)")
    p.add_argument("--dims", type=_dims,
                   help="comma-separated prefix sizes (default: powers of two from 8, plus D)")
    p.add_argument("--out", default="tune_out", help="output and cache directory (default: tune_out)")
    p.add_argument("--budget-ms", type=float,
                   help="ms per query at one thread, of the faiss index")
    p.add_argument("--budget-mflops", type=float, help="MFLOPs per query (cost model)")
    p.add_argument("--budget-bytes", type=float, help="stored bytes per vector")
    p.add_argument("--min-recall", type=float, help="least k-recall@k (validation queries)")
    p.add_argument("--quick", action="store_true",
                   help="a small grid (still refined); the Panorama (exact pruning, panorama / "
                        "panoivf) and 4-bit fast-scan (fastscan / ivffastscan / fsfunnel) families "
                        "enter it with one configuration each, the full grid sweeps them")
    p.add_argument("--export", help="write the overall choice here as a faiss index file")
    p.add_argument("--rechoose", metavar="OUT",
                   help="choose again from OUT/tune.json under the given budgets, without "
                        "building (with --export: rebuilds only the chosen index)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the query split, samples, k-means and graphs (default: 0)")
    p.add_argument("--timing-queries", type=int, default=latency.TIMING_QUERIES,
                   help="queries in the fixed sample faiss latencies are measured on "
                        f"(default: {latency.TIMING_QUERIES})")
    p.add_argument("--dask", metavar="ADDRESS|local:N",
                   help="run each index build as a task on a Dask cluster (a scheduler address, "
                        "or local:N for a LocalCluster of N worker processes); needs the [dask] "
                        "extra")
    return p


def _print_choice(result, out, export):
    o = result["overall"]
    print(f"chosen: {o['config']}  metric={result['info']['metric']}  "
          f"recall_test={o['recall_test']:.4f}  ms_1t(faiss)={o['ms_1t']:.4g}  "
          f"bytes={o['bytes']:.1f}  -> {out}/tune.md" + (f", {export}" if export else ""))


def main(argv=None):
    args = parser().parse_args(argv)
    budgets = {"ms": args.budget_ms, "mflops": args.budget_mflops, "bytes": args.budget_bytes,
               "recall": args.min_recall}
    out = args.out
    try:
        if args.rechoose is not None:
            out = args.rechoose
            result = rechoose(out, budgets, export=args.export)
        else:
            xb, xq, gt, distance, source, inputs = load_inputs(args.base, args.queries, args.hdf5,
                                                               args.k, args.out, args.seed)
            client, where = (None, None) if args.dask is None else connect(args.dask)
            try:
                result = tune(xb, xq, args.out, k=args.k, metric=args.metric,
                              normalize=args.normalize, dims=args.dims, budgets=budgets,
                              quick=args.quick, export=args.export, seed=args.seed, gt=gt,
                              source=source, client=client, where=where, file_distance=distance,
                              inputs=inputs, pca=args.pca, timing_queries=args.timing_queries)
            finally:
                if client is not None:
                    close(client)
    except BudgetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; finished results so far are cached in {out} (the ground "
              f"truth); rerun to start the grid again", file=sys.stderr)
        return 130
    _print_choice(result, out, args.export)
    return 0
