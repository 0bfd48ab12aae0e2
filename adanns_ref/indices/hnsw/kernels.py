"""numba kernels of `hnsw`: faiss 1.15.1's HNSW build and search, step for step.

The function boundaries are hnswlib's (``hnswalg.h``): `greedy_descent` (the upper-level walk of
``searchKnn`` / ``addPoint``), `search_layer` (``searchBaseLayer``), `shrink_neighbors`
(``getNeighborsByHeuristic2``), the link update split as faiss 1.15.1 does into `forward_links`
and `merge_reverse` (``mutuallyConnectNewElement``), and `search_one` (``searchBaseLayerST`` +
``searchKnn``). The rules inside are faiss's (SPEC_HNSW §4-§6); the heaps are `indices.hnsw.heaps`.

The graph is passed as ``g = (nbrs, offsets, cum)``: ``nbrs`` one flat int32 array, the list of
node i at level l at ``nbrs[offsets[i] + cum[l] : offsets[i] + cum[l + 1]]``, valid up to its
first -1 (faiss ``HNSW::neighbors / offsets / cum_nneighbor_per_level``). Vectors are rows of a
C-contiguous float32 X; a query q is a 1-D array of d entries and dis(q, j) uses X[j, :d]. All
distances are `core.simd.simd_sum` (faiss's ``fvec_L2sqr`` / ``fvec_inner_product`` order), whose
bits do not depend on the argument order, so ``symmetric_dis`` needs no care. Kernels that
allocate nothing are compiled with ``_nrt=False`` (see `indices.hnsw.heaps`); only the batch drivers,
`random_levels`, `reverse_edges` and `merge_reverse` allocate.
"""
import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba.core import cgutils, types
from numba.extending import intrinsic

from ...core.mt19937 import mt_next, mt_rand_float
from ...core.simd import simd_sum
from ...core.threads import serial_or_parallel
from ...core.topk import counting_order, empty_heap, select_sorted
from .heaps import (cmp, heap_heapify, heap_push, heap_reorder, heap_replace_top, mm_count_below,
                    mm_pop_min, mm_push, pq_pop, pq_push)

ID_SENTINEL = np.int64(np.iinfo(np.int64).max)  # an id above every node's: empty `select_sorted` slots


@intrinsic
def _prefetch(typingctx, row, t):
    """Hint the cache to load row[t] (llvm.prefetch: read, high locality)."""
    if not (isinstance(row, types.Array) and row.ndim == 1 and isinstance(t, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        name = "llvm.prefetch.p0" if llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"  # opaque pointers
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(row, t), codegen


@numba.njit(cache=True, inline="always")
def _dis(q, X, j, ip):
    return simd_sum(q, X[j], not ip)


@numba.njit(cache=True, inline="always")
def _range(g, i, l):
    nbrs, offsets, cum = g
    return offsets[i] + cum[l], offsets[i] + cum[l + 1]


@numba.njit(cache=True, inline="always")
def _new_neighbors(q, X, g, node, l, ip, vis, stamp, bi, bd):
    """The neighbours of node at level l in list order, ids into bi and distances into bd; with
    stamp > 0 only those not yet visited (vis[v] != stamp, then marked). Returns their number.
    All distances are computed before any is used, as faiss's 4-wide batches do, so the row
    loads overlap instead of waiting on each comparison."""
    nbrs = g[0]
    b, e = _range(g, node, l)
    n = 0
    for j in range(b, e):
        v = nbrs[j]
        if v < 0:
            break
        if stamp == 0 or vis[v] != stamp:
            if stamp:
                vis[v] = stamp
            bi[n] = v
            n += 1
    for t in range(n):  # faiss prefetches too; here whole rows, so their misses overlap
        row = X[bi[t]]
        for c in range(0, q.shape[0], 16):
            _prefetch(row, c)
    for t in range(n):
        bd[t] = _dis(q, X, bi[t], ip)
    return n


# ----------------------------------------------------------------------- levels and order

@numba.njit(cache=True)
def random_levels(key, pos, probas, n):
    """faiss HNSW::random_level for n points: f = double(rand_float()), the first level whose
    probability exceeds the rest of f (f -= p each step), else the last level."""
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        f = np.float64(mt_rand_float(key, pos))
        out[t] = probas.shape[0] - 1
        for level in range(probas.shape[0]):
            if f < probas[level]:
                out[t] = level
                break
            f -= probas[level]
    return out


@numba.njit(cache=True, _nrt=False)
def shuffle_segment(order, i0, i1, key, pos):
    """faiss's bucket shuffle: for j in i0..i1-1, swap order[j] with order[j + rand_int(i1 - j)]
    (one draw per j, the last one included)."""
    for j in range(i0, i1):
        r = j + np.int64(mt_next(key, pos) % np.uint64(i1 - j))
        order[j], order[r] = order[r], order[j]


# ----------------------------------------------------------------------- graph walks

@numba.njit(cache=True, _nrt=False)
def greedy_descent(q, X, g, l, nearest, dn, ip, vis, bi, bd):
    """faiss greedy_update_nearest at level l: scan the list of the current node, move to every
    strictly better neighbour seen, repeat until a pass does not move (no visited set).
    Returns (nearest, dn, number of distances)."""
    ndis = 0
    while True:
        prev = nearest
        n = _new_neighbors(q, X, g, prev, l, ip, vis, 0, bi, bd)
        ndis += n
        for t in range(n):
            if cmp(dn, bd[t], ip):
                nearest, dn = bi[t], bd[t]
        if nearest == prev:
            return nearest, dn, ndis


@numba.njit(cache=True, _nrt=False)
def search_layer(q, X, g, l, ep, dep, efc, ip, vis, stamp, bi, bd, cd, ci, rd, ri):
    """faiss search_neighbors_to_add: best-first search at level l from (ep, dep). Candidates
    C in cd/ci (best on top), results R in rd/ri (worst on top, at most efc); vis[v] == stamp
    marks visited nodes. Returns |R|."""
    empty = np.int64(0)  # a typed 0: a literal 0 would make numba compile pq_push twice more
    nc = pq_push(cd, ci, empty, dep, ep, True, ip)
    nr = pq_push(rd, ri, empty, dep, ep, False, ip)
    vis[ep] = stamp
    while nc > 0:
        if cmp(cd[0], rd[0], ip):  # the best candidate is worse than the worst result
            break
        c = ci[0]
        nc = pq_pop(cd, ci, nc, True, ip)
        for t in range(_new_neighbors(q, X, g, c, l, ip, vis, stamp, bi, bd)):
            if nr < efc or cmp(rd[0], bd[t], ip):
                nr = pq_push(rd, ri, nr, bd[t], bi[t], False, ip)
                nc = pq_push(cd, ci, nc, bd[t], bi[t], True, ip)
                if nr > efc:
                    nr = pq_pop(rd, ri, nr, False, ip)
    return nr


@numba.njit(cache=True, _nrt=False)
def shrink_neighbors(X, rd, ri, nr, m, ip, fd, fi, od, oi):
    """faiss shrink_neighbor_list_inner: with |R| >= m, keep candidates best first unless a
    kept one is strictly closer to them than the query is, stopping at m kept; R (worst on top)
    is rebuilt from the kept ones in that order. |R| < m: R unchanged. Returns |R|."""
    if nr < m:
        return nr
    nf = np.int64(0)  # typed, not Literal[int](0): one compiled pq_push per ordering
    while nr > 0:
        nf = pq_push(fd, fi, nf, rd[0], ri[0], True, ip)
        nr = pq_pop(rd, ri, nr, False, ip)
    no = 0
    while nf > 0:
        vd, vi = fd[0], fi[0]
        nf = pq_pop(fd, fi, nf, True, ip)
        good = True
        for u in range(no):
            if cmp(vd, _dis(X[oi[u]], X, vi, ip), ip):
                good = False
                break
        if good:
            od[no], oi[no] = vd, vi
            no += 1
            if no >= m:
                break
    for u in range(no):
        nr = pq_push(rd, ri, nr, od[u], oi[u], False, ip)
    return nr


# ----------------------------------------------------------------------- link update

@numba.njit(cache=True, _nrt=False)
def forward_links(p, lp, X, g, ep, max_level, efc, ip, vis, stamp, bi, bd, cd, ci, rd, ri, fd, fi, od, oi):
    """faiss compute_forward_links (Phase A): descend greedily to level lp + 1, then at each
    level min(lp, max_level)..0 search from the same (nearest, dn), shrink to the level's
    capacity and write p's own list worst first (p itself skipped). Returns the next stamp."""
    nbrs, offsets, cum = g
    q = X[p]
    nearest = ep
    dn = _dis(q, X, nearest, ip)
    for l in range(max_level, lp, -1):
        nearest, dn, _ = greedy_descent(q, X, g, l, nearest, dn, ip, vis, bi, bd)
    for l in range(min(lp, max_level), -1, -1):
        nr = search_layer(q, X, g, l, nearest, dn, efc, ip, vis, stamp, bi, bd, cd, ci, rd, ri)
        stamp += 1
        b, e = _range(g, p, l)
        nr = shrink_neighbors(X, rd, ri, nr, e - b, ip, fd, fi, od, oi)
        j = b
        while nr > 0:
            o = ri[0]
            nr = pq_pop(rd, ri, nr, False, ip)
            if o != p:
                nbrs[j] = o
                j += 1
        nbrs[j:e] = -1
    return stamp


@numba.njit(cache=True)
def merge_reverse(node, l, srcs, keep, X, g, ip):
    """faiss merge_reverse_links (Phase B): append the new sources srcs (sorted, distinct) absent
    from node's list at level l; on overflow, sort all by (distance to node best first, id) and
    keep greedily as the heuristic does, at most `keep` (< capacity: faiss's prune headroom)."""
    nbrs = g[0]
    b, e = _range(g, node, l)
    cands = np.empty(e - b + srcs.shape[0], dtype=np.int64)
    n_old = 0
    while b + n_old < e and nbrs[b + n_old] >= 0:
        cands[n_old] = nbrs[b + n_old]
        n_old += 1
    nc = n_old
    for v in srcs:
        present = v == node
        for t in range(n_old):
            present = present or cands[t] == v
        if not present:
            cands[nc] = v
            nc += 1
    if nc <= e - b:
        for t in range(nc):  # a loop: a slice assignment compiles numba's shape-error path
            nbrs[b + t] = cands[t]
        nbrs[b + nc:e] = -1
        return
    # best first, ties -> smaller id: `select_sorted` on key = dist (L2) or -dist (ip), keys may be inf
    key = np.empty(nc, dtype=np.float32)
    for t in range(nc):
        dc = _dis(X[node], X, cands[t], ip)
        key[t] = -dc if ip else dc
    kd, ki = empty_heap(nc, ID_SENTINEL)
    select_sorted(key, cands, nc, kd, ki)
    nk = 0
    for t in range(nc):
        c, dc = ki[t], -kd[t] if ip else kd[t]
        good = True
        for u in range(nk):
            if cmp(dc, _dis(X[nbrs[b + u]], X, c, ip), ip):
                good = False
                break
        if good:
            nbrs[b + nk] = c
            nk += 1
            if nk >= keep:
                break
    nbrs[b + nk:e] = -1


@serial_or_parallel
def forward_links_batch(pts, levels, X, g, ep, max_level, efc, ip, n_parts):
    """Phase A for a sub-batch: each point only writes its own, still unreachable, lists, so the
    points run in parallel (n_parts contiguous parts) and the graph does not depend on it."""
    n, ntotal = pts.shape[0], X.shape[0]
    cap = g[2][1]  # the level-0 capacity 2M bounds every list
    for part in numba.prange(n_parts):
        vis = np.zeros(ntotal, dtype=np.int32)
        cd, ci = np.empty(ntotal + 1, np.float32), np.empty(ntotal + 1, np.int64)
        rd, ri = np.empty(efc + 2, np.float32), np.empty(efc + 2, np.int64)
        fd, fi = np.empty(efc + 2, np.float32), np.empty(efc + 2, np.int64)
        od, oi = np.empty(cap, np.float32), np.empty(cap, np.int64)
        bd, bi = np.empty(cap, np.float32), np.empty(cap, np.int64)
        stamp = np.int64(1)  # typed, not Literal[int](1): one compiled forward_links, not two
        for t in range(part * n // n_parts, (part + 1) * n // n_parts):
            p = pts[t]
            stamp = forward_links(p, levels[p], X, g, ep, max_level, efc, ip, vis, stamp,
                                  bi, bd, cd, ci, rd, ri, fd, fi, od, oi)


@numba.njit(cache=True)
def reverse_edges(pts, levels, g):
    """The links the sub-batch pts just wrote, as reverse edges grouped by (level, dest), sources
    ascending: returns (group starts (ngroups + 1,), level, dest (ngroups,), srcs). Sources in
    id order (`select_sorted` on zero keys), then stable counting sorts by dest and by level:
    the (level, dest, source) order of three stable argsorts, without compiling numpy's sorts."""
    nbrs = g[0]
    n, ntotal = pts.shape[0], levels.shape[0]
    srt_d, srt = empty_heap(n, ID_SENTINEL)
    select_sorted(np.zeros(n, np.float32), pts, n, srt_d, srt)
    count, top = 0, 0
    for p in srt:
        count += (nbrs[_range(g, p, 0)[0]:_range(g, p, levels[p])[1]] >= 0).sum()
        top = max(top, levels[p])
    lvl0, dest0, src0 = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.int64)
    t = 0
    for p in srt:
        for l in range(levels[p] + 1):
            b, e = _range(g, p, l)
            for j in range(b, e):
                if nbrs[j] < 0:
                    break
                lvl0[t], dest0[t], src0[t] = l, nbrs[j], p
                t += 1
    by_dest = counting_order(dest0, np.arange(count, dtype=np.int64), ntotal)
    order = counting_order(lvl0, by_dest, top + 1)
    lvl, dest, src = lvl0[order], dest0[order], src0[order]
    starts = np.empty(count + 1, np.int64)
    ngroups = 0
    for u in range(count):
        if u == 0 or lvl[u] != lvl[u - 1] or dest[u] != dest[u - 1]:
            starts[ngroups] = u
            ngroups += 1
    starts[ngroups] = count
    starts = starts[:ngroups + 1]
    return starts, lvl[starts[:-1]], dest[starts[:-1]], src


@serial_or_parallel
def merge_reverse_batch(starts, lvl, dest, srcs, keeps, X, g, ip):
    """Phase B: every (level, dest) list is merged by exactly one iteration, so in parallel."""
    for t in numba.prange(lvl.shape[0]):
        merge_reverse(dest[t], lvl[t], srcs[starts[t]:starts[t + 1]], keeps[lvl[t]], X, g, ip)


# ----------------------------------------------------------------------- search

@numba.njit(cache=True, _nrt=False)
def search_one(q, X, g, ep, max_level, efs, ip, hd, hi, md, mi, vis, stamp, bi, bd):
    """faiss HNSW::search for one query with a bounded queue and relative-distance check: greedy
    descent to level 1, then search_from_candidates at level 0 with a MinimaxHeap of capacity
    max(efs, k) (md/mi); the k results in hd/hi (faiss's result heap, sorted at the end).
    Returns the distance count faiss's hnsw_stats.ndis adds for this query."""
    k = hd.shape[0]
    heap_heapify(k, hd, hi, ip)
    if ep < 0:
        return 0
    nearest, dn, ndis = ep, _dis(q, X, ep, ip), 0
    for l in range(max_level, 0, -1):
        nearest, dn, nd = greedy_descent(q, X, g, l, nearest, dn, ip, vis, bi, bd)
        ndis += nd
    cap = max(efs, k)
    empty = np.int64(0)  # typed, not Literal[int](0): one compiled mm_push (and heap_pop), not two
    size, nvalid = mm_push(cap, empty, empty, md, mi, nearest, dn, ip)
    if cmp(hd[0], dn, ip):
        heap_replace_top(k, hd, hi, dn, nearest, ip)
    vis[nearest] = stamp
    while nvalid > 0:
        v0, d0 = mm_pop_min(size, md, mi, ip)
        nvalid -= 1
        if mm_count_below(size, md, ip, d0) >= efs:
            break
        n = _new_neighbors(q, X, g, v0, 0, ip, vis, stamp, bi, bd)
        ndis += n
        for t in range(n):
            if cmp(hd[0], bd[t], ip):
                heap_replace_top(k, hd, hi, bd[t], bi[t], ip)
            size, nvalid = mm_push(cap, size, nvalid, md, mi, bi[t], bd[t], ip)
    heap_reorder(k, hd, hi, ip)
    return ndis


@serial_or_parallel
def search_batch(Q, X, g, ep, max_level, efs, ip, D, I, ndis, n_parts):
    """search_one for every row of Q (nq, d) into D/I (nq, k) and ndis (nq,); queries are
    independent, so n_parts contiguous parts run in parallel with identical results."""
    nq, k = D.shape
    cap = max(efs, k)
    for part in numba.prange(n_parts):
        vis = np.zeros(X.shape[0], dtype=np.int32)
        md, mi = np.empty(cap, np.float32), np.empty(cap, np.int64)
        bd, bi = np.empty(g[2][1], np.float32), np.empty(g[2][1], np.int64)
        for r in range(part * nq // n_parts, (part + 1) * nq // n_parts):
            ndis[r] = search_one(Q[r], X, g, ep, max_level, efs, ip, D[r], I[r], md, mi, vis, r + 1,
                                 bi, bd)


@serial_or_parallel
def rescore_batch(Q, X, Ib, ip, D, I):
    """faiss IndexRefineFlat after its base search: distances of the candidates Ib (nq, kb) to
    Q (nq, d_s) at d_s (+inf for L2 / -inf for ip where the id is -1), then reorder_2_heaps: the
    first k pushed, the rest replace the root when strictly better, sorted best first."""
    nq, k = D.shape
    kb = Ib.shape[1]
    for r in numba.prange(nq):
        hd, hi = D[r], I[r]
        for t in range(kb):
            i = Ib[r, t]
            dv = np.float32(-np.inf if ip else np.inf) if i < 0 else _dis(Q[r], X, i, ip)
            if t < k:
                heap_push(t + 1, hd, hi, dv, i, ip)
            elif cmp(hd[0], dv, ip):
                heap_replace_top(k, hd, hi, dv, i, ip)
        heap_reorder(k, hd, hi, ip)


@numba.njit(cache=True)
def first_bad_node(nbrs, offsets, cum, levels):
    """First node with a list entry outside [0, n), on itself, on a node absent from that level,
    or after the list's first -1 (a loaded file); -1 if the lists are sound."""
    n = levels.shape[0]
    for i in range(n):
        for l in range(levels[i] + 1):
            ended = False
            for j in range(offsets[i] + cum[l], offsets[i] + cum[l + 1]):
                v = nbrs[j]
                if v < 0:
                    ended = True
                    if v != -1:
                        return i
                elif ended or v >= n or v == i or levels[v] < l:
                    return i
    return -1
