"""Kernels of the funnel's stage 0 (`funnel.py`, `funnel.index.py`): a fused prefix scan + top-k.

Stage 0 at a small prefix d_0 (8, 16, 32) reads N * d_0 floats and does 2 d_0 FLOPs per row and
query. As a BLAS GEMM with a 16-deep inner product it ran at ~11 % of the machine's sgemm (the
1000 x N product is written out and read back), and the merge of each GEMM block into the heaps
cost as much again. `scan_search` instead computes every distance in registers and feeds it
straight into the top-k of `topk` (heaps, or reservoirs for k > RESERVOIR_MIN_K, as faiss
switches):

    layout   the prefix z (N, d) is stored in blocks of BLOCK = 16 rows, transposed:
             blocks[b, t, l] = z[16 b + l, t]   (`to_blocks`; rows past N are zero, never offered)
    scan     per group of QUERY_GROUP queries and chunk of CHUNK rows (CHUNK * d floats, in L1):
             for each query (or QUAD queries) and block, one kernel call gives the keys of 16 rows
             at once, one row per SIMD lane, and compares them with the query's threshold in the
             same registers; only a block with a key <= the threshold is offered, in id order,
             to `push_chunk` (heaps) or to the reservoir's append + `shrink`
             (`_reservoir_offer`), so the results are the k smallest (distance, id) keys, ties to
             the smaller id, exactly as exact_search's

Two distance forms, the two of faiss's IndexFlat / `knn_L2sqr` (`search.exact`):

    direct (`sums16`; scan_search without xn)  l2 sum_t (q_t - z_t)^2, ip -sum_t q_t z_t, in
        `core.simd` order 1 (16 partial sums s_l over t = l mod 16, then the 8/4-lane tree and
        the tail; each term an fma), the 16 partial sums of each row as 16 vector registers, so
        every distance has the bits of `simd_sum(q, z_j)` (tested): faiss's order for batches
        with nq * d < 128000 (`exact._scan_direct`). Per 16 rows 2d + 15 vector operations.
    BLAS (`blas16`; scan_search with xn = `block_norms`)  l2 max((||q||^2 + ||z||^2) - 2 <q, z>,
        0), ip -<q, z>, with <q, z> one fma chain over t = 0 .. d-1: the bits of faiss's BLAS
        path (`exhaustive_L2sqr_blas`: OpenBLAS's sgemm sums these short depths in that
        order; tested bit for bit against faiss with its BLAS threshold lowered, and numpy's
        OpenBLAS agrees), faiss's order for nq * d >= 128000. Per 16 rows d + 4 vector
        operations; QUAD queries per call so that QUAD fma chains run side by side.

The funnel (`funnel._stage0`) uses the BLAS form for batches of nq >= BLAS_MIN_QUERIES queries,
where faiss 1.15 would only switch at nq >= 128000 / d_0 (8,000 queries at d_0 = 16). The
deviation halves the distance work (k = 1, 50,000 x 16, 1,000 queries: 0.023 s vs 0.044 s CPU at
one thread); the top-k selection, ~0.1 s at k_0 = 200 over 250,000 rows, is the same in both
forms, so that stage 0 went from 0.35 s to 0.23-0.28 s (measured on a loaded machine).
BLAS_MIN_QUERIES is a round number above QUERY_GROUP, not a measured crossover. The shortlists of
the two forms differ only where the distances at ranks k_0 and k_0 + 1 are within float32
rounding of each other (tested against faiss's IndexFlatL2(d_0) + knn_L2sqr_by_idx). Below
BLAS_MIN_QUERIES the scan is bit-identical to faiss's IndexFlatL2(d_0) at that batch size.

Cost per query: N / 16 blocks of d loads and the vector operations above; the top-k work is
O(k log(N / k)) offers. Parallel over query groups (numba prange) above PARALLEL_MIN_WORK, compiled
serially below it (`core.threads.serial_or_parallel`); results do not depend on the thread count.

The re-rank kernels that follow stage 0 are in `funnel.rerank_kernels`.

The <16 x float> vectors are plain LLVM vectors: on a CPU without AVX-512 they are split into
narrower registers, with the same bits (every fma is llvm.fma, rounded once).
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..core.simd import sq_norms
from ..core.threads import serial_or_parallel
from ..core.topk import (RESERVOIR_MIN_K, shrink, worse, finalize, heap_sort, new_heaps, new_reservoirs,
                         push_chunk, reservoir_to_row)

BLOCK = 16  # database rows per SIMD vector (16 float32 lanes of AVX-512)
CHUNK = 128  # database rows a query group scans before moving on
QUERY_GROUP = 16  # queries that scan one CHUNK while it sits in L1
# Above SCAN_MAX_DIM a GEMM (exact.exact_search) does stage 0 faster: here 2d + 15 (direct) or
# d + 4 (BLAS form) vector operations per 16 rows, there d FMAs per row at 11 % (d = 16) to 64 %
# (d = 128) of sgemm.
SCAN_MAX_DIM = 32
QUAD = 4  # queries whose BLAS-form keys one `blas16` call computes
# Batches of at least BLAS_MIN_QUERIES queries scan in the BLAS form (faiss: nq * d >= 128000).
BLAS_MIN_QUERIES = 64


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
        return _store_and_count(builder, key, oa, o_, args[7])

    return types.int64(xq, r, blocks, b, l2, out, o, thr), codegen


def _splat(builder, x):
    """<16 x float> with every lane x."""
    vec, i32 = ir.VectorType(ir.FloatType(), 16), ir.IntType(32)
    return builder.shuffle_vector(builder.insert_element(ir.Constant(vec, None), x, ir.Constant(i32, 0)),
                                  ir.Constant(vec, None), ir.Constant(ir.VectorType(i32, 16), [0] * 16))


def _store_and_count(builder, key, out_arr, o, thr, count=True):
    """Store the 16 keys at out[o:o + 16]; return how many are <= thr (int64), or (count False)
    the i16 mask of those."""
    out_p = builder.bitcast(builder.gep(out_arr.data, [o]), key.type.as_pointer())
    builder.store(key, out_p, align=4)
    mask = builder.bitcast(builder.fcmp_ordered("<=", key, _splat(builder, thr)), ir.IntType(16))
    if not count:
        return mask
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(16), [ir.IntType(16)]),
                                           "llvm.ctpop.i16")
    return builder.zext(builder.call(ctpop, [mask]), ir.IntType(64))


@intrinsic
def blas16(typingctx, xq, r, blocks, b, xn, qn, l2, out, thr):
    """out[16 i + l] = the BLAS-form key of query min(r + i, nq - 1) and row 16 b + l (blocks as
    in `sums16`), for i < QUAD queries and l < 16:

        ip = fma(z_{d-1}, q_{d-1}, ... fma(z_1, q_1, fma(z_0, q_0, 0)))   (one chain over t)
        l2:  max((qn[r + i] + xn[16 b + l]) - 2 ip, 0)        ip:  -ip

    the operations of faiss's `exhaustive_L2sqr_blas` / `exhaustive_inner_product_blas`, with
    the inner product summed as OpenBLAS's sgemm kernel sums it at these depths (t in order, one
    fma each; tested bit for bit against faiss's BLAS path). xn: float32 1-D C, the squared norms
    of the rows (len >= 16 (b + 1)); qn: float32 (nq,) the queries' squared norms; thr: float32
    (QUAD,) their thresholds; out: float32 (16 QUAD,). Returns the int64 mask whose bit 16 i + l
    says key <= thr[i]. QUAD queries at once: their QUAD fma chains share each load of z_t and
    run side by side (one chain alone waits on the fma latency)."""
    def f32_array(a, ndim):
        return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == ndim and a.layout == "C"

    if not (f32_array(xq, 2) and f32_array(blocks, 3) and f32_array(xn, 1) and f32_array(qn, 1)
            and f32_array(out, 1) and f32_array(thr, 1) and isinstance(l2, types.Boolean)
            and all(isinstance(i, types.Integer) for i in (r, b))):
        return None

    def codegen(context, builder, signature, args):
        vec, i64 = ir.VectorType(ir.FloatType(), 16), ir.IntType(64)
        xa, ba, na, qa, oa, ta = (context.make_array(signature.args[i])(context, builder, args[i])
                                  for i in (0, 2, 4, 5, 7, 8))
        nq, d = builder.extract_value(xa.shape, 0), builder.extract_value(xa.shape, 1)
        n = lambda v: ir.Constant(d.type, v)
        r_, b_ = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 3))
        rows = [builder.select(builder.icmp_signed("<", builder.add(r_, n(i)), nq), builder.add(r_, n(i)),
                               builder.sub(nq, n(1))) for i in range(QUAD)]
        x_rows = [builder.gep(xa.data, [builder.mul(ri, d)]) for ri in rows]
        base = builder.gep(ba.data, [builder.mul(b_, builder.mul(d, n(BLOCK)))])
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                             "llvm.fma.v16f32")
        acc = [cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * 16)) for _ in range(QUAD)]
        with cgutils.for_range_slice(builder, n(0), d, n(1)) as (t, _):
            zv = builder.load(builder.bitcast(builder.gep(base, [builder.mul(t, n(BLOCK))]),
                                              vec.as_pointer()), align=4)
            for i in range(QUAD):
                xv = _splat(builder, builder.load(builder.gep(x_rows[i], [t])))
                builder.store(builder.call(fma, [zv, xv, builder.load(acc[i])]), acc[i])
        norms = builder.load(builder.bitcast(builder.gep(na.data, [builder.mul(b_, n(BLOCK))]),
                                             vec.as_pointer()), align=4)
        zero, two = ir.Constant(vec, [0.0] * 16), ir.Constant(vec, [2.0] * 16)
        mask = ir.Constant(i64, 0)
        for i in range(QUAD):
            ip = builder.load(acc[i])
            dis = builder.fsub(builder.fadd(_splat(builder, builder.load(builder.gep(qa.data, [rows[i]]))), norms),
                               builder.fmul(two, ip))
            dis = builder.select(builder.fcmp_ordered("<", dis, zero), zero, dis)  # faiss: dis < 0 -> 0
            key = builder.select(args[6], dis, builder.fneg(ip))
            thr_i = builder.load(builder.gep(ta.data, [n(i)]))
            bits = _store_and_count(builder, key, oa, n(16 * i), thr_i, count=False)
            mask = builder.or_(mask, builder.shl(builder.zext(bits, i64), ir.Constant(i64, 16 * i)))
        return mask

    return types.int64(xq, r, blocks, b, xn, qn, l2, out, thr), codegen


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


@numba.njit(cache=True, inline="always")
def _offer(keys, valid, j0, r, hd, hi, bd, bi, count):
    """Offer keys[:valid] (ids j0 + j) to query r's reservoir (bd not empty) or heap; returns
    the new threshold."""
    if bd.shape[0] > 0:
        return _reservoir_offer(keys, valid, j0, r, bd, bi, count)
    push_chunk(keys[:valid], j0, hd[r], hi[r])
    return hd[r, 0]


@serial_or_parallel
def _scan_kernel(xq, blocks, n, use_ip, xn, qn, hd, hi, bd, bi, count):
    """Every (query, row) distance of the blocked prefix, offered chunk by chunk to query r's heap
    (hd, hi) or, when bd is not empty, its reservoir (bd, bi, count); rows end sorted. Distances
    in the direct form (`sums16`), or in the BLAS form (`blas16`, QUAD queries at a time) when
    the row norms xn are given (qn: the query norms; both empty otherwise)."""
    nq = xq.shape[0]
    use_res = bd.shape[0] > 0
    blas = xn.shape[0] > 0
    cap = bd.shape[1] - 1  # a reservoir's threshold slot
    for g in numba.prange((nq + QUERY_GROUP - 1) // QUERY_GROUP):
        r0, r1 = g * QUERY_GROUP, min((g + 1) * QUERY_GROUP, nq)
        buf = np.empty(BLOCK * QUAD, dtype=np.float32)
        thr4 = np.empty(QUAD, dtype=np.float32)
        for c0 in range(0, n, CHUNK):
            m = min(CHUNK, n - c0)
            b0 = c0 // BLOCK
            for r in range(r0, r1, QUAD if blas else 1):
                nr = min(QUAD, r1 - r) if blas else 1
                for i in range(nr):
                    thr4[i] = bd[r + i, cap] if use_res else hd[r + i, 0]
                for s in range((m + BLOCK - 1) // BLOCK):
                    valid = min(BLOCK, m - s * BLOCK)  # rows past n are never offered
                    if blas:  # literal booleans: the compiler drops the other operations
                        mask = (blas16(xq, r, blocks, b0 + s, xn, qn, False, buf, thr4) if use_ip else
                                blas16(xq, r, blocks, b0 + s, xn, qn, True, buf, thr4))
                        if mask == 0:  # late in the scan almost every block
                            continue
                        for i in range(nr):
                            if (mask >> (BLOCK * i)) & 0xFFFF:
                                thr4[i] = _offer(buf[BLOCK * i:], valid, c0 + s * BLOCK, r + i,
                                                 hd, hi, bd, bi, count)
                    else:
                        hits = (sums16(xq, r, blocks, b0 + s, False, buf, 0, thr4[0]) if use_ip else
                                sums16(xq, r, blocks, b0 + s, True, buf, 0, thr4[0]))
                        if hits:
                            thr4[0] = _offer(buf, valid, c0 + s * BLOCK, r, hd, hi, bd, bi, count)
        for r in range(r0, r1):
            if use_res:
                reservoir_to_row(bd[r], bi[r], count[r], hd[r], hi[r])
            else:
                heap_sort(hd[r], hi[r])


def block_norms(z):
    """The squared norms of the rows of a prefix z (N, d) float32 as `blas16` reads them: faiss's
    `fvec_norms_L2sqr` (`core.simd.sq_norms`), zero-padded to the 16-row blocks of `to_blocks`."""
    out = np.zeros(-(-z.shape[0] // BLOCK) * BLOCK, dtype=np.float32)
    out[:z.shape[0]] = sq_norms(z)
    return out


def scan_search(xq, blocks, n, k, metric, xn=None):
    """Exact k-NN of the rows of xq (nq, d) among the n rows stored in `blocks` (`to_blocks`) ->
    (D float32 (nq, k), I int64 (nq, k)), faiss output conventions (`topk.finalize`).
    xn None: the direct form (faiss's small-batch order); xn = `block_norms` of the rows: the
    BLAS form (faiss's large-batch order). Inputs validated by the caller: float32 C arrays,
    matching d, k >= 1, metric "l2" / "ip"."""
    nq = xq.shape[0]
    hd, hi = new_heaps(nq, k)
    bd, bi, count = new_reservoirs(nq if k > RESERVOIR_MIN_K else 0, k)
    empty = np.empty(0, dtype=np.float32)
    if xn is None:
        xn = qn = empty
    else:
        qn = sq_norms(xq) if metric == "l2" else np.zeros(nq, dtype=np.float32)
    if nq and n:
        kernel = _scan_kernel.for_work(nq * n * xq.shape[1])
        kernel(xq, blocks, n, metric == "ip", xn, qn, hd, hi, bd, bi, count)
    return finalize(hd, hi, metric)
