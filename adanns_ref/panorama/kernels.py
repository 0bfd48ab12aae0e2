"""numba kernels of Panorama (exact level-by-level pruning), shared by its flat, IVF and refine
forms.

Notation (faiss's `impl/Panorama.h`). Dimensions are split into L contiguous levels
[b_l, b_{l+1}), l = 0 .. L-1, b_0 = 0, b_L = d. For a row y and the query x:

    rho_l(y) = sqrt(sum_{t >= b_l} y_t^2)          (tail norm from level l on; rho_L = 0)
    e_0      = rho_0(y)^2 + rho_0(x)^2             ("l2"; "ip": e_0 = 0)
    e_{l+1}  = e_l - 2 <x, y>_l                     ("ip": e_l + <x, y>_l), <.,.>_l over level l
    LB_{l+1} = e_{l+1} - 2 rho_{l+1}(y) rho_{l+1}(x)   ("ip": e_{l+1} + rho_{l+1}(y) rho_{l+1}(x))

By Cauchy-Schwarz the final e_L (the exact distance) is >= LB_{l+1}, so a candidate whose LB
exceeds the current k-th distance tau can be dropped after level l. faiss keeps a candidate iff
tau > LB ("ip": tau < LB), strictly.

Storage (faiss's level-major batches). Rows are grouped in batches of bs. Inside batch b the codes
of level l for all bs rows are contiguous: row p of batch b, level l starts at float offset
b bs d + b_l bs + p (b_{l+1} - b_l). Tail norms: rho_l of row p of batch b at b bs (L+1) + l bs + p.
Padding rows of the last batch are zero and never visited.

Float order of each quantity (what makes the distances bit-identical to faiss):
- rho_l: one float32 accumulator s, levels from L-1 down to 0, t ascending inside a level,
  s = s + y_t * y_t (product rounded, then the sum: `Panorama.cpp` is compiled without FMA),
  rho_l = sqrtf(s) (correctly rounded). e_0 = rho_0(y) * rho_0(y) + rho_0(x) * rho_0(x), so
  ||y||^2 is the square of its rounded root, not the sum itself.
- <x, y>_l, batch kernel (`compute_level_dot_kernel`, GCC with associative-math): order P4,
  measured against the faiss-cpu 1.15.1 wheel: four lanes a_j = sum of p_t over t = j, j+4, ...
  below m = w - w mod 4 (each add rounded); if w - m == 3 and the row is in one of the groups
  of four rows faiss's row loop unrolls (all but the last count mod 4 active rows):
  h_0 = (a_0 + a_2) + p_m,
  h_1 = (a_1 + a_3) + p_{m+1}, s = (h_0 + h_1) + p_{m+2}; otherwise
  s = (a_0 + a_2) + (a_1 + a_3), then + p_t for the remaining t in order.
  Exception: level widths 8, 16, ..., 64 are compiled as fully unrolled specialisations whose
  association GCC chooses; P4 then differs from faiss in the last bits (measured: about 1 in 10
  distances by an ulp). The ids agree up to such near-ties; tests use a tolerance there.
- <x, y>_l, refine kernel (`IndexFlatPanorama::search_subset`): faiss's `fvec_inner_product`
  at its dispatched SIMD level, which is `_simd` order 1 on AVX-512 machines.
- e and LB: e - 2 dot is exact scaling plus one rounding; 2 rho(y) rho(x) = (2 rho(y)) rho(x).

Speed (the work, not the bits): the lane sums a_j of a group of four rows come from one
`lanes.lane_sums` call, each row's four lanes one <4 x float> register, as faiss's row loop
computes four rows together; only the combination of the lanes is scalar (`p4_combine`).
Measured under load, CPU time at 1 thread, 100,000 x 2048, 32 levels, k = 10: 0.99x faiss's
time for one query per call, 0.93x for a batch of 1,000 (scalar sums: about 4.5x).
"""
import numba
import numpy as np

from ..core.simd import inner
from .lanes import lane_sums

FLT_MAX = np.float32(np.finfo(np.float32).max)


@numba.njit(cache=True, inline="always")
def p4_combine(a0, a1, a2, a3, q, q0, y, y0, m, w, grouped):
    """The dot product in order P4 from its four lane sums over t < m = w - w % 4 (`lanes`);
    grouped: the row is one of a group of four (faiss's unrolled row loop), not one of the 0-3
    leftover rows."""
    if grouped and w - m == 3:
        h0 = (a0 + a2) + q[q0 + m] * y[y0 + m]
        h1 = (a1 + a3) + q[q0 + m + 1] * y[y0 + m + 1]
        return (h0 + h1) + q[q0 + m + 2] * y[y0 + m + 2]
    s = (a0 + a2) + (a1 + a3)
    for t in range(m, w):
        s += q[q0 + t] * y[y0 + t]
    return s


@numba.njit(cache=True, inline="always")
def level_dot(q, q0, y, base, i, w, grouped):
    """<q[q0:q0+w], y[y0:y0+w]> in float32 for y0 = base + i w, order P4 (module docstring)."""
    m = w - (w & 3)
    a = lane_sums(q, q0, y, base, (i,), w, m)
    return p4_combine(a[0], a[1], a[2], a[3], q, q0, y, base + i * w, m, w, grouped)


@numba.njit(cache=True)
def tail_norms_into(x, bounds, out, o0, stride):
    """out[o0 + l stride] = rho_l(x) for l = 0 .. L, in faiss's order (module docstring)."""
    L = bounds.shape[0] - 1
    s = np.float32(0.0)
    for l in range(L - 1, -1, -1):
        for t in range(bounds[l], bounds[l + 1]):
            s += x[t] * x[t]
        out[o0 + l * stride] = np.sqrt(s)
    out[o0 + L * stride] = np.float32(0.0)


@numba.njit(cache=True)
def write_level_layout(x, bounds, bs, codes, cums, pos0):
    """Store the rows of x (n, d) at storage positions pos0, pos0 + 1, ... (level-major batches)."""
    n, d = x.shape
    L = bounds.shape[0] - 1
    for i in range(n):
        pos = pos0 + i
        b, p = pos // bs, pos % bs
        for l in range(L):
            w = bounds[l + 1] - bounds[l]
            dst = b * bs * d + bounds[l] * bs + p * w
            for t in range(w):
                codes[dst + t] = x[i, bounds[l] + t]
        tail_norms_into(x[i], bounds, cums, b * bs * (L + 1) + p, bs)


@numba.njit(cache=True)
def read_level_layout(codes, bounds, bs, pos0, n, out):
    """Inverse of `write_level_layout`: out (n, d) = the rows stored at positions pos0 ..."""
    d = out.shape[1]
    for i in range(n):
        pos = pos0 + i
        b, p = pos // bs, pos % bs
        for l in range(bounds.shape[0] - 1):
            w = bounds[l + 1] - bounds[l]
            src = b * bs * d + bounds[l] * bs + p * w
            for t in range(w):
                out[i, bounds[l] + t] = codes[src + t]


@numba.njit(cache=True, inline="always")
def prune_dot(cums, lc, i, dot, qr, ip, tau, exact):
    """Add level l's term dot to row i's distance, store it, return whether its bound keeps it
    (faiss `prune_kernel`)."""
    if ip:
        e = exact[i] + dot
        ok = tau < e + cums[lc + i] * qr
    else:
        e = exact[i] - np.float32(2.0) * dot
        ok = tau > e - np.float32(2.0) * cums[lc + i] * qr
    exact[i] = e
    return ok


@numba.njit(cache=True, inline="always")
def prune_rows(rows, lev, w, q, lo, codes, cums, lc, qr, ip, tau, exact, active, keep):
    """Level l of one group of four rows `rows` (a tuple, in position order), computed together
    as faiss's row loop does, so that their independent sums overlap in the CPU (measured: four
    rows beat eight or sixteen per call, which took 1.5x the time on a full batch; why was not
    established): `prune_dot` of each, survivors appended to active[keep:] in order. Returns the
    new keep."""
    m = w - (w & 3)
    a = lane_sums(q, lo, codes, lev, rows, w, m)
    for r in range(len(rows)):
        i = rows[r]
        s = p4_combine(a[4 * r], a[4 * r + 1], a[4 * r + 2], a[4 * r + 3], q, lo, codes,
                       lev + i * w, m, w, True)
        active[keep] = i
        keep += 1 if prune_dot(cums, lc, i, s, qr, ip, tau, exact) else 0
    return keep


@numba.njit(cache=True)
def filter_batch(codes, cums, pos0, size, batch_no, bs, bounds, q, qn, ip, tau, active, exact,
                 scanned):
    """faiss `Panorama::progressive_filter_batch` for one batch of a list stored from position
    pos0 (a multiple of bs) with `size` rows; tau the threshold fixed for the whole batch (a
    similarity for ip). Survivors are active[:count] (positions in the batch, ascending), their
    exact distances (similarities for ip) in exact[active[j]]. scanned[l] += rows entering level l.
    Returns count."""
    d = q.shape[0]
    L = bounds.shape[0] - 1
    start = batch_no * bs
    cur = min(size - start, bs)
    cbase = (pos0 + start) * (L + 1)
    q2 = qn[0] * qn[0]
    for i in range(cur):
        active[i] = i
        r = cums[cbase + i]
        exact[i] = np.float32(0.0) if ip else r * r + q2
    count = cur
    for l in range(L):
        if count == 0:
            break
        scanned[l] += count
        lo = bounds[l]
        w = bounds[l + 1] - lo
        lev = (pos0 + start) * d + lo * bs
        lc = cbase + (l + 1) * bs
        qr = qn[l + 1]
        keep = 0
        groups = count - (count & 3)  # faiss's row loop: groups of four, then 0-3 leftover rows
        # compaction in place: keep <= j, so active[keep] overwrites an entry already read
        for j in range(0, groups, 4):
            rows = (active[j], active[j + 1], active[j + 2], active[j + 3])
            keep = prune_rows(rows, lev, w, q, lo, codes, cums, lc, qr, ip, tau, exact, active,
                              keep)
        for j in range(groups, count):
            i = active[j]
            active[keep] = i
            dot = level_dot(q, lo, codes, lev, i, w, False)
            keep += 1 if prune_dot(cums, lc, i, dot, qr, ip, tau, exact) else 0
        count = keep
    return count


@numba.njit(cache=True, inline="always")
def worse(d1, i1, d2, i2, ip):
    """(d1, i1) ranks after (d2, i2) in faiss's heaps: larger distance (negated similarity for
    ip); among equal ones the larger id for l2 (`CMax::cmp2`) but the smaller id for ip
    (`CMin::cmp2`), so faiss keeps the smaller id of an l2 tie and the larger id of an ip tie."""
    return d1 > d2 or (d1 == d2 and (i1 < i2 if ip else i1 > i2))


@numba.njit(cache=True, inline="always")
def heap_offer(hd, hi, dis, idx, ip):
    """faiss's heap `add_result`: (dis, idx) enters iff dis < hd[0] strictly (a tie with the
    current k-th result does not enter, whatever its id); the heap is a max-heap under `worse`."""
    if not dis < hd[0]:
        return
    k = hd.shape[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= k:
            break
        if c + 1 < k and worse(hd[c + 1], hi[c + 1], hd[c], hi[c], ip):
            c += 1
        if worse(dis, idx, hd[c], hi[c], ip):
            break
        hd[i] = hd[c]
        hi[i] = hi[c]
        i = c
    hd[i] = dis
    hi[i] = idx


@numba.njit(cache=True, inline="always")
def scan_list(codes, cums, ids, pos0, size, bs, bounds, q, qn, ip, hd, hi, active, exact, scanned):
    """All batches of one stored list against one query's heap (hd, hi): faiss's flat search
    loop and `IVFFlatScannerPanorama::scan_codes`. The threshold is the heap's root when a batch
    starts; survivors enter the heap in position order. ids[pos] is the id of position pos."""
    for b in range((size + bs - 1) // bs):
        tau = -hd[0] if ip else hd[0]
        count = filter_batch(codes, cums, pos0, size, b, bs, bounds, q, qn, ip, tau, active,
                             exact, scanned)
        for j in range(count):
            i = active[j]
            heap_offer(hd, hi, -exact[i] if ip else exact[i], ids[pos0 + b * bs + i], ip)


@numba.njit(cache=True)
def search_query(codes, cums, ids, list_pos, list_size, probes, bs, bounds, q, ip, hd, hi, scanned):
    """One query q scans the lists probes[:] in that order (negative entries skipped) into its
    heap hd, hi (k,) (FLT_MAX, -1 at the start; distances negated for ip); scanned (L,) int64
    accumulates the rows entering each level. Flat search is one list holding every row."""
    L = bounds.shape[0] - 1
    qn = np.empty(L + 1, dtype=np.float32)
    tail_norms_into(q, bounds, qn, 0, 1)
    active = np.empty(bs, dtype=np.int64)
    exact = np.empty(bs, dtype=np.float32)
    for p in range(probes.shape[0]):
        l = probes[p]
        if l >= 0:
            scan_list(codes, cums, ids, list_pos[l], list_size[l], bs, bounds, q, qn, ip,
                      hd, hi, active, exact, scanned)


@numba.njit(cache=True, parallel=True)
def search_lists(codes, cums, ids, list_pos, list_size, probes, bs, bounds, Q, ip, hd, hi, scanned):
    """`search_query` for every row of Q (nq, d), in parallel over the queries (as faiss)."""
    for r in numba.prange(Q.shape[0]):
        search_query(codes, cums, ids, list_pos, list_size, probes[r], bs, bounds, Q[r], ip,
                     hd[r], hi[r], scanned[r])


@numba.njit(cache=True)
def search_lists_serial(codes, cums, ids, list_pos, list_size, probes, bs, bounds, Q, ip, hd, hi,
                        scanned):
    """`search_lists` on the calling thread: for a few queries, waking a thread pool costs more
    than the search (faiss likewise runs min(nq, threads) threads)."""
    for r in range(Q.shape[0]):
        search_query(codes, cums, ids, list_pos, list_size, probes[r], bs, bounds, Q[r], ip,
                     hd[r], hi[r], scanned[r])


def run_search(*args):
    """search_lists (one query per chunk: their costs differ widely), or its serial form below
    PARALLEL_MIN_QUERIES queries (without the chunk-size context, which costs tens of
    microseconds per call)."""
    if args[8].shape[0] < PARALLEL_MIN_QUERIES:
        search_lists_serial(*args)
        return
    with numba.parallel_chunksize(1):
        search_lists(*args)


PARALLEL_MIN_QUERIES = 4


@numba.njit(cache=True, parallel=True)
def refine_subset(xb, cums, bounds, stat_width, Q, labels, ip, hd, hi, stats):
    """faiss `IndexFlatPanorama::search_subset` (batch size 1, rows contiguous): query r re-ranks
    the rows labels[r, :] (-1 skipped) in that order, one candidate at a time, pruning against
    the live heap root; dots in `_simd` order 1 (faiss's `fvec_inner_product`). stats (nq, 2):
    faiss's total_dims (+= d per candidate) and total_dims_scanned (+= stat_width[l] per level
    entered)."""
    L = bounds.shape[0] - 1
    d = Q.shape[1]
    for r in numba.prange(Q.shape[0]):
        q = Q[r]
        qn = np.empty(L + 1, dtype=np.float32)
        tail_norms_into(q, bounds, qn, 0, 1)
        q2 = qn[0] * qn[0]
        for j in range(labels.shape[1]):
            idx = labels[r, j]
            if idx < 0:
                continue
            c0 = cums[idx, 0]
            e = np.float32(0.0) if ip else c0 * c0 + q2
            stats[r, 0] += d
            pruned = False
            for l in range(L):
                stats[r, 1] += stat_width[l]
                lo = bounds[l]
                dot = inner(q[lo:], xb[idx, lo:], bounds[l + 1] - lo)
                cb = cums[idx, l + 1]
                if ip:
                    e = e + dot
                    pruned = e + cb * qn[l + 1] < -hd[r, 0]
                else:
                    e = e - np.float32(2.0) * dot
                    pruned = e - np.float32(2.0) * cb * qn[l + 1] > hd[r, 0]
                if pruned:
                    break
            if not pruned:
                heap_offer(hd[r], hi[r], -e if ip else e, idx, ip)


@numba.njit(cache=True)
def sort_row(d, i, ip):
    """faiss `heap_reorder` of one heap, in place: best first under `worse` (ties: ascending ids
    for l2, descending for ip); empty slots (FLT_MAX, -1) last."""
    order = np.argsort(d, kind="mergesort")
    ds = d[order]
    ids = i[order]
    a = 0
    while a < ds.shape[0]:
        b = a + 1
        while b < ds.shape[0] and ds[b] == ds[a]:
            b += 1
        ids[a:b] = np.sort(ids[a:b])
        if ip:
            ids[a:b] = ids[a:b][::-1].copy()
        a = b
    d[:] = ds
    i[:] = ids


@numba.njit(cache=True, parallel=True)
def sort_results(hd, hi, ip):
    """`sort_row` of every row, in parallel."""
    for r in numba.prange(hd.shape[0]):
        sort_row(hd[r], hi[r], ip)


@numba.njit(cache=True)
def sort_results_serial(hd, hi, ip):
    for r in range(hd.shape[0]):
        sort_row(hd[r], hi[r], ip)
