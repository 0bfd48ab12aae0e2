"""Command line of `python -m adanns_ref.tune` (see `run.tune`). Exit code 2 on bad input or a
budget no configuration meets, with the reason on stderr."""
import argparse
import sys

from ..distributed import close, connect
from .run import load_inputs, tune


def parser():
    p = argparse.ArgumentParser(
        prog="python -m adanns_ref.tune",
        description="Find the best Matryoshka prefix and index for your embeddings under a "
                    "budget, and export it to faiss. With no input: the embedded Fashion-MNIST "
                    "MRL embeddings.")
    p.add_argument("--base", help="database vectors (.npy .fbin .fvecs ...; memory-mapped)")
    p.add_argument("--queries", help="query vectors, same dimension as --base")
    p.add_argument("--hdf5", help="an ann-benchmarks file (train / test / neighbors)")
    p.add_argument("--metric", choices=("l2", "ip"), default="l2")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")],
                   help="comma-separated prefix sizes (default: powers of two from 8, plus D)")
    p.add_argument("--no-normalize", action="store_true",
                   help="plain truncation instead of normalised prefixes (base/queries input)")
    p.add_argument("--out", default="tune_out", help="output and cache directory")
    p.add_argument("--budget-ms", type=float, help="ms per query at one thread")
    p.add_argument("--budget-mflops", type=float, help="MFLOPs per query (cost model)")
    p.add_argument("--budget-bytes", type=float, help="stored bytes per vector")
    p.add_argument("--min-recall", type=float, help="least k-recall@k (validation queries)")
    p.add_argument("--quick", action="store_true", help="a small grid (minutes, not hours)")
    p.add_argument("--export", help="write the overall choice here as a faiss index file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dask", metavar="ADDRESS|local:N",
                   help="run each index build as a task on a Dask cluster (a scheduler address, "
                        "or local:N for a LocalCluster of N worker processes); needs the [dask] "
                        "extra")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    budgets = {"ms": args.budget_ms, "mflops": args.budget_mflops, "bytes": args.budget_bytes,
               "recall": args.min_recall}
    try:
        xb, xq, gt, normalize, source = load_inputs(args.base, args.queries, args.hdf5, args.k,
                                                    args.out, args.seed)
        if normalize is None:
            normalize = not args.no_normalize
        client, where = (None, None) if args.dask is None else connect(args.dask)
        try:
            result = tune(xb, xq, args.out, k=args.k, metric=args.metric, normalize=normalize,
                          dims=args.dims, budgets=budgets, quick=args.quick, export=args.export,
                          seed=args.seed, gt=gt, source=source, client=client, where=where)
        finally:
            if client is not None:
                close(client)
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        print(f"python -m adanns_ref.tune: error: {exc}", file=sys.stderr)
        return 2
    o = result["overall"]
    print(f"chosen: {o['config']}  recall_test={o['recall_test']:.4f}  ms_1t={o['ms_1t']:.4g}  "
          f"bytes={o['bytes']}  -> {args.out}/tune.md" +
          (f", {args.export}" if args.export else ""))
    return 0
