"""Kernels of the funnel (`funnel.py`, `funnel.index.py`): a fused prefix scan + top-k for stage
0, and a re-rank that reads only the shortlisted database rows.

Stage 0 at a small prefix d_0 (8, 16, 32) reads N * d_0 floats and does 2 d_0 FLOPs per row and
query: as a GEMM with a 16-deep inner product it ran at ~11 % of the machine's sgemm, and the
merge of each GEMM block into the heaps cost as much as the GEMM. `scan_search` instead computes
every distance directly and feeds it straight into the top-k of `topk` (heaps, or reservoirs for
k > RESERVOIR_MIN_K, as faiss switches):

    layout   the prefix z (N, d) is stored in blocks of BLOCK = 16 rows, transposed:
             blocks[b, t, l] = z[16 b + l, t]   (`to_blocks`; rows past N are zero, never offered)
    scan     per group of QUERY_GROUP queries and chunk of CHUNK rows (CHUNK * d floats, in L1):
             for each query and block, `sums16` gives the keys of 16 rows at once, one row per
             SIMD lane, and counts those <= the query's threshold in the same register; only a
             block with such a key is offered, in id order, to `push_chunk` (heaps) or to the
             reservoir's append + `shrink` (`_reservoir_offer`), so the results are the k
             smallest (distance, id) keys, ties to the smaller id, exactly as exact_search's

Cost per query: N / 16 blocks of d loads, 2d + 15 vector operations (l2) each; the top-k work is
O(k log(N / k)) offers. Parallel over query groups (numba prange) above PARALLEL_MIN_WORK, compiled
serially below it (`core.threads.serial_or_parallel`); results do not depend on the thread count.

Distances are the direct form of faiss's small-batch path (`exact._scan_direct`):
l2 sum_t (q_t - z_t)^2, ip -sum_t q_t z_t, summed in `core.simd` order 1 (16 partial sums s_l over
t = l mod 16, then the 8/4-lane tree and the tail; each term an fma). `sums16` runs that order
on 16 rows at once with the 16 partial sums of each row as 16 vector registers, so every
distance has the bits of `simd_sum(q, z_j)` (tested). Exact search `exact.exact_search` uses the
same direct form when nq * d < BLAS_THRESHOLD; above it, it uses the BLAS form
||q||^2 + ||z||^2 - 2 <q, z>, whose last bits differ, so a stage-0 shortlist can then differ
from exact_search's where the distances at ranks k_0 and k_0 + 1 are within float32 rounding.

Re-ranking (`rerank_rows_sorted`; `rerank_rows` reads query by query): every (query, candidate)
pair of a batch is scored in ascending row order, so a memory-mapped database is read forward
once per batch and a row shortlisted by several queries is read back to back; candidate c of query r is scored against the d-prefix rebuilt from
the raw database row in place, (x_ct / n_1[c]) / n_2[c] for t < d (`truncate.prefix_scales`;
bit-identical to `truncate.prefix`), so only k' * d floats per query are read from a database
that may be a memory map, and nothing of size N * D is ever copied. The two divisions per entry
(skipped where a scale is exactly 1, which changes no bit) cost about as much as reading the row
at D = 2048; multiplying by reciprocals would be faster but changes the bits.

The <16 x float> vectors are plain LLVM vectors: on a CPU without AVX-512 they are split into
narrower registers, with the same bits (every fma is llvm.fma, rounded once).
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..core.simd import inner, l2sqr
from ..core.threads import serial_or_parallel
from ..core.topk import (RESERVOIR_MIN_K, shrink, worse, finalize, heap_push, heap_sort, new_heaps,
                         new_reservoirs, push_chunk, reservoir_to_row)

BLOCK = 16  # database rows per SIMD vector (16 float32 lanes of AVX-512)
CHUNK = 128  # database rows a query group scans before moving on
QUERY_GROUP = 16  # queries that scan one CHUNK while it sits in L1
# Above SCAN_MAX_DIM a GEMM (exact.exact_search) does stage 0 faster: here 2d + 15 vector
# operations per 16 rows, there d FMAs per row at 11 % (d = 16) to 64 % (d = 128) of sgemm.
SCAN_MAX_DIM = 32


@intrinsic
def sums16(typingctx, xq, r, blocks, b, l2, out, o, thr):
    """out[o + l] = the distance key of row 16 b + l, where blocks[b, t, l] = z_{16b+l, t}:
    simd_sum(xq[r], z, True) (l2) or -simd_sum(xq[r], z, False) (ip), for l < 16. Returns how
    many of the 16 keys are <= thr (one vector compare: the top-k pre-test comes for free).

    xq: float32 (nq, d) C; blocks: float32 (nb, d, 16) C; out: float32 1-D C, o + 16 <= len.
    Indices instead of row views keep the hot loop free of array-struct traffic.
    The 16 partial sums of `core.simd` order 1 are 16 vectors of 16 rows each (registers), so every
    lane runs the order of one `simd_sum` call."""
    def f32_array(a, ndim):
        return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == ndim and a.layout == "C"

    if not (f32_array(xq, 2) and f32_array(blocks, 3) and f32_array(out, 1) and isinstance(l2, types.Boolean)
            and all(isinstance(i, types.Integer) for i in (r, b, o)) and thr == types.float32):
        return None  # not typed for these arguments: numba reports the mismatch

    def codegen(context, builder, signature, args):
        f32, i32 = ir.FloatType(), ir.IntType(32)
        vec = ir.VectorType(f32, 16)
        xa = context.make_array(signature.args[0])(context, builder, args[0])
        ba = context.make_array(signature.args[2])(context, builder, args[2])
        oa = context.make_array(signature.args[5])(context, builder, args[5])
        d = builder.extract_value(xa.shape, 1)
        n = lambda v: ir.Constant(d.type, v)
        r_, b_, o_ = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 3, 6))
        is_l2 = args[4]
        x_row = builder.gep(xa.data, [builder.mul(r_, d)])
        base = builder.gep(ba.data, [builder.mul(b_, builder.mul(d, n(BLOCK)))])
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             "llvm.fma.v16f32")

        def step(t, acc):
            """acc + u * v lane-wise, one rounding; u = v = z_t - x_t (l2: the same square as
            (x_t - z_t)^2, and x_t becomes a broadcast memory operand) or u = x_t, v = z_t."""
            xt = builder.load(builder.gep(x_row, [t]))
            xv = builder.shuffle_vector(builder.insert_element(ir.Constant(vec, None), xt, ir.Constant(i32, 0)),
                                        ir.Constant(vec, None), ir.Constant(ir.VectorType(i32, 16), [0] * 16))
            zp = builder.bitcast(builder.gep(base, [builder.mul(t, n(BLOCK))]), vec.as_pointer())
            zv = builder.load(zp, align=4)
            diff = builder.fsub(zv, xv)
            return builder.call(fma, [builder.select(is_l2, diff, xv), builder.select(is_l2, diff, zv), acc])

        zero = ir.Constant(vec, [0.0] * 16)
        acc = [cgutils.alloca_once_value(builder, zero) for _ in range(16)]  # s_l, l = t mod 16
        m16 = builder.sub(d, builder.srem(d, n(16)))
        with cgutils.for_range_slice(builder, n(0), m16, n(16)) as (t0, _):
            for lane in range(16):
                builder.store(step(builder.add(t0, n(lane)), builder.load(acc[lane])), acc[lane])
        for lane in range(8):  # 8 lanes: s_l + s_{l+8}
            builder.store(builder.fadd(builder.load(acc[lane]), builder.load(acc[lane + 8])), acc[lane])
        tail = cgutils.alloca_once_value(builder, m16)
        with builder.if_then(builder.icmp_signed(">=", builder.sub(d, m16), n(8))):
            for lane in range(8):
                builder.store(step(builder.add(m16, n(lane)), builder.load(acc[lane])), acc[lane])
            builder.store(builder.add(m16, n(8)), tail)
        c = [builder.fadd(builder.load(acc[lane]), builder.load(acc[lane + 4])) for lane in range(4)]
        s = cgutils.alloca_once_value(builder, builder.fadd(builder.fadd(c[0], c[2]),
                                                            builder.fadd(c[1], c[3])))
        with cgutils.for_range_slice(builder, builder.load(tail), d, n(1)) as (t, _):
            builder.store(step(t, builder.load(s)), s)
        key = builder.select(is_l2, builder.load(s), builder.fneg(builder.load(s)))
        out_p = builder.bitcast(builder.gep(oa.data, [o_]), vec.as_pointer())
        builder.store(key, out_p, align=4)
        thr_v = builder.shuffle_vector(builder.insert_element(ir.Constant(vec, None), args[7], ir.Constant(i32, 0)),
                                       ir.Constant(vec, None), ir.Constant(ir.VectorType(i32, 16), [0] * 16))
        mask = builder.bitcast(builder.fcmp_ordered("<=", key, thr_v), ir.IntType(16))
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(16), [ir.IntType(16)]),
                                               "llvm.ctpop.i16")
        return builder.zext(builder.call(ctpop, [mask]), ir.IntType(64))

    return types.int64(xq, r, blocks, b, l2, out, o, thr), codegen


def to_blocks(z):
    """The scan layout of a prefix z (N, d) float32: (ceil(N / 16), d, 16), rows past N zero."""
    n, d = z.shape
    nb = -(-n // BLOCK)
    padded = np.zeros((nb * BLOCK, d), dtype=np.float32)
    padded[:n] = z
    return np.ascontiguousarray(padded.reshape(nb, BLOCK, d).transpose(0, 2, 1))


def from_blocks(blocks, n):
    """The first n rows of a scan layout back as a C-contiguous (n, d) float32 prefix."""
    return np.ascontiguousarray(blocks.transpose(0, 2, 1).reshape(-1, blocks.shape[1])[:n])


@numba.njit(cache=True, inline="always")
def _reservoir_offer(keys, valid, j0, r, bd, bi, count):
    """`topk.reservoir_push_chunk` for keys[:valid] (ids j0 + j) into reservoir row r, written
    on the 2-D arrays: the same keys enter in the same order (same results), without building
    the four row views per call that cost more than the few entries a block brings. Returns the
    new threshold distance."""
    cap = bd.shape[1] - 1
    n = count[r, 0]
    for j in range(valid):
        d, i = keys[j], j0 + j
        if d <= bd[r, cap] and worse(bd[r, cap], bi[r, cap], d, i):
            bd[r, n], bi[r, n] = d, i
            n += 1
            if n == cap:
                n = shrink(bd[r], bi[r], n, cap // 2)
    count[r, 0] = n
    return bd[r, cap]


@serial_or_parallel
def _scan_kernel(xq, blocks, n, use_ip, hd, hi, bd, bi, count):
    """Every (query, row) distance of the blocked prefix, offered chunk by chunk to query r's heap
    (hd, hi) or, when bd is not empty, its reservoir (bd, bi, count); rows end sorted."""
    nq = xq.shape[0]
    use_res = bd.shape[0] > 0
    cap = bd.shape[1] - 1  # a reservoir's threshold slot
    for g in numba.prange((nq + QUERY_GROUP - 1) // QUERY_GROUP):
        r0, r1 = g * QUERY_GROUP, min((g + 1) * QUERY_GROUP, nq)
        buf = np.empty(BLOCK, dtype=np.float32)
        for c0 in range(0, n, CHUNK):
            m = min(CHUNK, n - c0)
            b0 = c0 // BLOCK
            for r in range(r0, r1):
                thr = bd[r, cap] if use_res else hd[r, 0]
                for s in range((m + BLOCK - 1) // BLOCK):
                    # use_ip is passed as a literal: the compiler drops the other operation
                    hits = (sums16(xq, r, blocks, b0 + s, False, buf, 0, thr) if use_ip else
                            sums16(xq, r, blocks, b0 + s, True, buf, 0, thr))
                    if hits == 0:  # late in the scan almost every block: no row view is built
                        continue
                    valid = min(BLOCK, m - s * BLOCK)  # rows past n are never offered
                    if use_res:
                        thr = _reservoir_offer(buf, valid, c0 + s * BLOCK, r, bd, bi, count)
                    else:
                        push_chunk(buf[:valid], c0 + s * BLOCK, hd[r], hi[r])
                        thr = hd[r, 0]
        for r in range(r0, r1):
            if use_res:
                reservoir_to_row(bd[r], bi[r], count[r], hd[r], hi[r])
            else:
                heap_sort(hd[r], hi[r])


def scan_search(xq, blocks, n, k, metric):
    """Exact k-NN of the rows of xq (nq, d) among the n rows stored in `blocks` (`to_blocks`) ->
    (D float32 (nq, k), I int64 (nq, k)), faiss output conventions (`topk.finalize`).
    Inputs validated by the caller: float32 C arrays, matching d, k >= 1, metric "l2" / "ip"."""
    nq = xq.shape[0]
    hd, hi = new_heaps(nq, k)
    bd, bi, count = new_reservoirs(nq if k > RESERVOIR_MIN_K else 0, k)
    if nq and n:
        kernel = _scan_kernel.for_work(nq * n * xq.shape[1])
        kernel(xq, blocks, n, metric == "ip", hd, hi, bd, bi, count)
    return finalize(hd, hi, metric)


@numba.njit(cache=True, inline="always")
def pair_distance(xq, r, db, c, s1, s2, use_ip, buf):
    """dist(xq[r], prefix of db[c]) as a heap key (-<.,.> for ip), the prefix rebuilt from the raw
    row with the scales s1[c], s2[c] (empty s1: no normalisation); buf: float32 (d,) scratch."""
    d = xq.shape[1]
    one = np.float32(1.0)
    a64, b64 = (s1[c], s2[c]) if s1.shape[0] > 0 else (1.0, 1.0)
    a, b = np.float32(a64), np.float32(b64)
    if a != a64 or b != b64:  # a scale of an out-of-range row: float64 divisions
        x = db[c]
        for t in range(d):
            buf[t] = np.float32(np.float64(np.float32(np.float64(x[t]) / a64)) / b64)
        a = np.float32(0.0)  # buf holds the prefix
    # A division by exactly 1 changes no bit: skipped (unit-norm rows often have
    # s_2 == 1, sometimes s_1 == 1), for divisions cost ~10x a multiply-add.
    elif a != one:
        x = db[c]
        for t in range(d):
            buf[t] = np.float32(x[t] / a)
        if b != one:
            for t in range(d):
                buf[t] = buf[t] / b
    elif b != one:
        x = db[c]
        for t in range(d):
            buf[t] = x[t] / b
    if a != one or b != one:
        return -inner(xq[r], buf, d) if use_ip else l2sqr(xq[r], buf, d)
    # a separate call: db may be a read-only memory map, buf is not
    return -inner(xq[r], db[c], d) if use_ip else l2sqr(xq[r], db[c], d)


@numba.njit(cache=True, parallel=True)
def rerank_rows(xq, db, ids, s1, s2, use_ip, hd, hi):
    """Push (dist(xq[r], prefix of db[c]), c) into heap r for every id c = ids[r, j] >= 0, query
    by query (rows read in shortlist order).

    xq (nq, d) query prefixes; db (N, D) raw rows (a memory map is read in place); s1, s2 (N,)
    float64, the `truncate.prefix_scales` at d (empty: no normalisation, the prefix is db[c, :d]);
    each division is rounded once to float32 (float32 division where the scale is a float32
    value, as `truncate.divide_rows`).
    Heaps are left unsorted. No `dis < root` shortcut: shortlist ids are unordered, so an equal
    distance with a smaller id must still reach heap_push's tie rule."""
    for r in numba.prange(ids.shape[0]):
        buf = np.empty(xq.shape[1], dtype=np.float32)
        for j in range(ids.shape[1]):
            c = ids[r, j]
            if c >= 0:
                heap_push(hd[r], hi[r], pair_distance(xq, r, db, c, s1, s2, use_ip, buf), c)


def rerank_rows_sorted(xq, db, ids, order, s1, s2, use_ip, hd, hi):
    """`rerank_rows` with the rows read in ascending row order across the whole batch: order
    (m,) int64 lists the flat positions p = r * s + j of the valid shortlist entries sorted by
    their row ids[r, j] (`shortlist_order`); each thread takes a contiguous run of it, so it
    reads a contiguous, increasing range of database rows (a row shortlisted by several queries
    is read back to back), and writes the distance of each pair to its position. The heaps then
    take each query's pairs in shortlist order. Same distances (same `pair_distance`), same
    heaps: results identical to rerank_rows. Extra memory: nq * s float32."""
    # the number of parts is chosen here, in Python: numba.get_num_threads() inside an njit
    # function is a dynamic global, which keeps numba from caching the kernel
    n_parts = min(numba.get_num_threads() * 4, max(1, order.shape[0] // 64))
    kernel = _rerank_sorted.for_work(order.shape[0] * xq.shape[1])
    kernel(xq, db, ids, order, s1, s2, use_ip, hd, hi, n_parts)


@serial_or_parallel
def _rerank_sorted(xq, db, ids, order, s1, s2, use_ip, hd, hi, n_parts):
    """rerank_rows_sorted's kernel, with the batch split into n_parts runs of `order`."""
    nq, s = ids.shape
    dist = np.empty(nq * s, dtype=np.float32)
    m = order.shape[0]
    for part in numba.prange(n_parts):
        buf = np.empty(xq.shape[1], dtype=np.float32)
        for t in range(part * m // n_parts, (part + 1) * m // n_parts):
            p = order[t]
            r, j = p // s, p % s
            dist[p] = pair_distance(xq, r, db, ids[r, j], s1, s2, use_ip, buf)
    for r in numba.prange(nq):
        for j in range(s):
            c = ids[r, j]
            if c >= 0:
                heap_push(hd[r], hi[r], dist[r * s + j], c)


def shortlist_order(ids):
    """Flat positions of the valid (>= 0) entries of ids (nq, s), sorted by row id (stable)."""
    flat = ids.ravel()
    pos = np.flatnonzero(flat >= 0)
    return pos[np.argsort(flat[pos], kind="stable")]
