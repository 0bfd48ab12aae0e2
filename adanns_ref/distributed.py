"""Scale-out on Dask: the per-row work of k-means, IVF / IVFPQ builds, PQ encoding and searches
runs as block tasks on the workers of a ``distributed.Client``, with the bits of one process.

This is the one module that talks to Dask (imported lazily: ``pip install 'adanns-ref[dask]'``).
Algorithms pass ``client=`` through and ask it for "the result of this function on every block
of these rows"; the in-process path (``client=None``) is untouched.

Why the bits are those of one process (faiss's distributed k-means idea, made exact):

1. Only per-row work is distributed: a row's nearest centroid, its PQ code, a query's k best.
   Everything that sums over rows runs on the driver in input order: the k-means centroid
   update (a float32 sum in input order), the objective, the empty-cluster splits.
2. A row's bits must not depend on the block it is in. Direct sums are per row. A GEMM's bits
   depend on its shape (measured with numpy's OpenBLAS: the product of a row subset differs in
   the last bit from the same rows inside the full product for ~0.1 % of the entries), so a
   batch is cut only where the in-process code starts a GEMM block (`assign.gemm_block_rows`,
   `exact.SearchPlan.q_block`, `exact.DB_BLOCK`, the PQ table blocks), and every block runs with
   the plan of the whole batch (direct or GEMM path, query-block size): each GEMM a worker
   computes is one the single process computes, on the same rows.
3. Results are placed by block number and merged in input order; top-k results of database
   blocks merge by the (distance, id) key, which is the rule of the heaps (`topk`).
4. A block's input is itself a task (a read from a file, a dask-array slice, or the in-memory
   block inside its task), and every task is a pure function of its inputs. When a worker dies,
   Dask recomputes the lost blocks and reruns the lost tasks elsewhere: same bits.

Same bits assume the same BLAS kernel on the driver and the workers (one machine, or one
build and CPU type across the cluster), as every GEMM-path result in this package does.

Inputs (`as_rows`, `map_rows`): an in-memory array; a path to a vector file that
`io.load_vectors(path, mmap=True)` reads (.fbin, .npy, ...): each worker memory-maps it and
reads its own rows, so the data does not pass through the driver (the path must name the same
file on every worker); or a dask array (sliced per block on the workers).

What stays on the driver: the k-means training sample (at most k * max_points_per_centroid
rows, the rows the update sums), the centroid update, splits and objective, the inverted lists
(the index is built on the driver; IVF-Flat receives the added vectors from the workers), the
merges. Shapes and dtypes are those of the in-process functions.
"""
import os
import warnings

import numpy as np

from .core.validate import as_float32_matrix
from .io import load_vectors

BLOCK_BYTES = 64 << 20  # largest input block a task reads (float32 rows), bounds worker memory
BLOCKS_PER_THREAD = 2  # blocks per worker thread when the data is small: a balanced load
MERGE_GROUP = 4  # ground truth: database blocks per worker thread between two top-k merges


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("client= needs Dask's distributed scheduler; install it with "
                          "pip install 'adanns-ref[dask]'") from exc
    return distributed


def check_client(client):
    """client must be a connected ``distributed.Client``; returns it."""
    if not isinstance(client, _distributed().Client):
        raise TypeError(f"client must be a distributed.Client (or None for in-process), "
                        f"got {type(client).__name__}")
    return client


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def _is_dask_array(x):
    return type(x).__module__.startswith("dask.array")


def as_rows(x, d):
    """(x, n) for an input of n rows of d columns: an in-memory x validated as float32 (the
    in-process rule, `core.validate.as_float32_matrix`); a vector file path or a dask array
    unchanged, its shape read without reading the data (the workers validate their rows). A
    wrong width or ndim raises ValueError (naming the file)."""
    if _is_path(x):
        shape = load_vectors(x, mmap=True).shape  # reads the header only
        where = f"{os.fspath(x)}: "
    elif _is_dask_array(x):
        shape = x.shape
        where = "dask array x: "
    else:
        x = as_float32_matrix(x, "x", d=d)
        return x, x.shape[0]
    if len(shape) != 2 or shape[1] != d:
        raise ValueError(f"{where}shape {shape}, expected (n, {d})")
    return x, int(shape[0])


def block_bounds(n, align, d, n_threads):
    """[(i0, i1)] cutting n rows into blocks that start at multiples of `align`: about
    BLOCKS_PER_THREAD blocks per worker thread, each at most BLOCK_BYTES of d-dim float32 rows
    (but at least one `align` unit)."""
    if n == 0:
        return []
    units = -(-n // align)
    per_block = -(-units // (BLOCKS_PER_THREAD * n_threads))
    per_block = max(1, min(per_block, BLOCK_BYTES // (4 * d * align)))
    rows = per_block * align
    return [(i0, min(n, i0 + rows)) for i0 in range(0, n, rows)]


# ----------------------------------------------------------------------- worker side

def _read_rows(path, rows):
    """Rows (a slice or an index array) of a vector file, validated, as float32 (on a worker)."""
    x = load_vectors(path, mmap=True)
    return as_float32_matrix(np.array(x[rows]), f"{os.fspath(path)}: rows")


def _as_block(x):
    return as_float32_matrix(x, "x")


def _identity(obj):
    return obj


def _call(fn, block, args, kwargs):
    return fn(block, *args, **kwargs)


# ----------------------------------------------------------------------- driver side

class Executor:
    """Runs block tasks of one input on a ``distributed.Client``; results in input order."""

    def __init__(self, client):
        self.client = check_client(client)
        self.n_threads = max(1, sum(self.client.nthreads().values()))

    def put(self, obj):
        """A future of obj that every task can take as an argument: one task holding obj, which
        each worker fetches once (Dask's peer-to-peer transfer). Not ``client.scatter``:
        scattered data has no recipe, so it is lost with its worker (and a broadcast scatter
        to a worker that just died fails); a task is recomputed."""
        with warnings.catch_warnings():  # obj is meant to travel inside its task
            warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
            return self.client.submit(_identity, obj, pure=False)

    def blocks(self, x, bounds):
        """One future per (i0, i1) holding rows i0..i1-1 of x as float32 on a worker. Each is
        a task (file read, dask slice, or the block itself as task data), so a block lost with
        its worker is recomputed."""
        if _is_path(x):
            return [self.client.submit(_read_rows, x, slice(i0, i1), pure=False)
                    for i0, i1 in bounds]
        if _is_dask_array(x):
            return self.client.compute([x[i0:i1] for i0, i1 in bounds])
        return [self.put(x[i0:i1]) for i0, i1 in bounds]

    def map(self, fn, blocks, *args, **kwargs):
        """[fn(block, *args, **kwargs) for block in blocks], run on the workers, in block
        order. Futures among args (e.g. from `put`) are resolved on the worker."""
        client = self.client
        futures = [client.submit(_call, fn, b, args, kwargs, pure=False) for b in blocks]
        out = [None] * len(futures)
        where = {f.key: i for i, f in enumerate(futures)}
        for future, result in _distributed().as_completed(futures, with_results=True):
            out[where[future.key]] = result
        return out

    def rows(self, x, index):
        """Rows `index` (int64 array, any order) of x, gathered in that order on the driver; a
        file's rows are read by the workers, in chunks of at most BLOCK_BYTES."""
        if isinstance(x, np.ndarray) or not (_is_path(x) or _is_dask_array(x)):
            return np.ascontiguousarray(as_float32_matrix(x, "x")[index])
        d = x.shape[1] if _is_dask_array(x) else load_vectors(x, mmap=True).shape[1]
        step = max(1, BLOCK_BYTES // (4 * d))
        if _is_dask_array(x):
            parts = self.client.compute([x[index[i:i + step]] for i in range(0, len(index), step)])
            parts = [_as_block(p) for p in self.client.gather(parts)]
        else:
            parts = self.map(_read_rows_of, [index[i:i + step] for i in range(0, len(index), step)], x)
        return np.concatenate(parts) if parts else np.empty((0, d), np.float32)


def _read_rows_of(index, path):
    return _read_rows(path, index)


def map_rows(client, x, d, align, fn, *args, **kwargs):
    """fn(rows, *args, **kwargs) on every block of the rows of x (array, vector file path or
    dask array; d columns), blocks starting at multiples of `align`, on the workers; returns
    [(i0, i1, result)] in input order. Array args should be `Executor.put` futures."""
    ex = Executor(client)
    x, n = as_rows(x, d)
    return map_bounds(ex, x, block_bounds(n, align, d, ex.n_threads), fn, args, kwargs)


def map_bounds(ex, x, bounds, fn, args, kwargs):
    """`map_rows` on the blocks `bounds` of a checked input x."""
    if _is_path(x):  # each task reads its own rows: no block stays in memory longer than its task
        results = ex.map(_on_file_rows, bounds, x, fn, args, kwargs)
    else:
        results = ex.map(fn, ex.blocks(x, bounds), *args, **kwargs)
    return [(i0, i1, r) for (i0, i1), r in zip(bounds, results)]


def _on_file_rows(bounds, path, fn, args, kwargs):
    return fn(_read_rows(path, slice(*bounds)), *args, **kwargs)


def _call_method(rows, obj, name, args):
    return getattr(obj, name)(rows, *args)


def map_method(client, obj, name, x, d, align, *args):
    """[obj.name(block, *args) for each block of x] on the workers (`map_rows`), obj broadcast
    once (an index, a quantizer); returns the results in input order."""
    obj = Executor(client).put(obj)
    return [r for _, _, r in map_rows(client, x, d, align, _call_method, obj, name, args)]


def map_concat(client, obj, name, x, d, align, *args, empty=None):
    """`map_method`, its block results concatenated in input order: obj.name(block, *args)
    returns an array or a tuple of arrays (then each position is concatenated; a position that
    is None in every block stays None). `empty` is returned when x has no rows. The one fan-out
    of the algorithms' ``client=`` paths (k-means assignment aside: `search.assign`)."""
    parts = map_method(client, obj, name, x, d, align, *args)
    if not parts:
        return empty
    if not isinstance(parts[0], tuple):
        return np.concatenate(parts)
    return tuple(None if parts[0][t] is None else np.concatenate([p[t] for p in parts])
                 for t in range(len(parts[0])))


# ----------------------------------------------------------------------- clients and sweeps

def connect(spec):
    """A Client from a ``--dask`` argument: "local:N" starts a LocalCluster of N single-thread
    worker processes on this machine, anything else is a scheduler address ("tcp://host:8786").
    Returns (client, description for a report)."""
    distributed = _distributed()
    if spec.startswith("local:"):
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--dask {spec!r}: expected local:N with N >= 1 worker processes")
        cluster = distributed.LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True)
        client = distributed.Client(cluster)
        return client, f"Dask LocalCluster, {n} worker processes x 1 thread ({client.scheduler.address})"
    client = distributed.Client(spec)
    workers = client.nthreads()
    return client, (f"Dask cluster at {spec}: {len(workers)} workers, "
                    f"{sum(workers.values())} threads")


def close(client):
    """Close a Client from `connect`, and the LocalCluster it started (a remote cluster stays)."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def map_configs(client, fn, configs, *shared):
    """[fn(c, *shared) for c in configs], one task per configuration, results in input order.
    client None: the same calls in this process, lazily (an iterator, so that a caller can
    report progress and drop each result's temporaries before the next call).
    fn: a module-level function, deterministic in its arguments (then the results equal the
    serial run's); shared: inputs every configuration reads (embeddings, ground truth), sent
    once. For a sweep: ``python -m experiments.reproduce --dask local:4``."""
    if client is None:
        return (fn(c, *shared) for c in configs)
    ex = Executor(client)
    shared = [ex.put(s) for s in shared]
    return ex.map(_config_task, configs, fn, shared)


def _config_task(config, fn, shared):
    return fn(config, *shared)
