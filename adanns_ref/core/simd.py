"""faiss's floating-point summation orders, reproduced so that our float32 results equal faiss's.

A float32 sum depends on the order of its additions and on whether a multiply-add rounds once
(fused, ``fma``) or twice. faiss's kernels fix both; every order below is the one faiss 1.15
runs on x86-64 **where it dispatches to its AVX-512 code** (the faiss-cpu wheel does on CPUs
with avx512f). Other SIMD levels (AVX2, NEON, scalar) use other orders: results then differ in
the last bits, which only matters at exact near-ties. Kernels here are plain numba functions
without validation; callers pass C-contiguous float32 arrays.

1. Per-pair sums (`simd_sum`, `simd_sums`, `sq_norms`; faiss ``fvec_L2sqr``,
   ``fvec_inner_product``, ``fvec_norm_L2sqr``), with p_t = (x_t - y_t)^2 or x_t y_t:

       16 lanes:  a_l = fma chain of p_t over t = l, l + 16, ... < m16 = d - d mod 16
       8 lanes:   b_l = a_l + a_{l+8}; if d - m16 >= 8, one more fma per lane at t = m16 + l
       4 lanes:   c_l = b_l + b_{l+4};  s = (c_0 + c_2) + (c_1 + c_3)
       tail:      s = fma(., ., s) for each remaining t, in order

   `simd_sum` does one pair in LLVM vector IR (numba does not vectorise the 16 independent fma
   chains itself); `simd_sums` does one vector against many columns with the lanes as rows, so
   LLVM vectorises across the columns instead.

2. Sub-quantizer tables (`table_into`; faiss ``fvec_L2sqr_ny`` / ``fvec_inner_products_ny``:
   the PQ distance table of a query for dsub < 16, its inner-product table for any dsub), the
   sub-vector x against each of the ksub centroids c of one codebook, p_t = (x_t - c_t)^2 or
   x_t c_t (each rounded once):

       dsub <= 8:   s = p_0, then s = fma(., ., s) for t = 1 .. dsub - 1   (a chain, in order)
       dsub >= 9:   order 1
       ksub < 16 (faiss's scalar leftover loops): dsub 8 in order 1; dsub 4 as
                    (p_0 + p_2) + (p_1 + p_3); dsub 2 as fma(., ., p_1) for t = 0
       fused=False: every fma replaced by a multiply then an add (faiss's batch L2 tables at
                    dsub 2, nbits < 8: ``compute_PQ_dis_tables_dsub2``)

   dsub == 12 has its own SSE kernel in faiss that we do not reproduce (last-bit differences).

3. ADC sums over M table lookups T[m, code_m] (`code_distance`; faiss ``PQCodeDistance``):

       SUM_LANES16 (nbits 8):  with M >= 16, lane l sums T[l], T[l + 16], ... over the full blocks
                               of 16; the lanes are added as the tree of ``_mm512_reduce_add_ps``
                               ((l, l + 8), then + 4, + 2, + 1); the other terms follow in order
       SUM_GROUPS4 (nbits 16, M % 4 == 0): each group of four summed left to right, then added
       SUM_SEQUENTIAL:         m = 0, 1, ..., M - 1

   `code_distances_words` computes SUM_LANES16 for a block of codes when M % 16 == 0, reading
   each code as little-endian uint64 words (the fast path of `ProductQuantizer.search`).
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

SUM_SEQUENTIAL, SUM_LANES16, SUM_GROUPS4 = 0, 1, 2  # ADC summation orders (order 3)


def faiss_runs_avx512(faiss):
    """True iff the given faiss module dispatches to its AVX-512 kernels, i.e. where the orders
    above are faiss's (tests use it to decide whether to demand bit-identity)."""
    level = getattr(getattr(faiss, "SIMDConfig", None), "get_level_name", None)
    return level is not None and "AVX512" in level()


@intrinsic
def fma(typingctx, a, b, c):
    """float32 a * b + c with a single rounding (llvm.fma), as one lane of _mm512_fmadd_ps."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32] * 3),
                                            "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


# ----------------------------------------------------------------------- order 1: per pair

def _contiguous_f32(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1 and a.layout == "C"


@intrinsic
def simd_sum(typingctx, x, y, l2):
    """float32 sum_t (x_t - y_t)^2 (l2 True) or sum_t x_t * y_t over t < len(x), in order 1.
    x, y: C-contiguous float32 1-D, len(y) >= len(x). The vector registers hold the lanes, so
    the sum costs about what faiss's does."""
    if not (_contiguous_f32(x) and _contiguous_f32(y) and isinstance(l2, types.Boolean)):
        return None  # not typed for these arguments: numba reports the mismatch
    return types.float32(x, y, l2), _order1_codegen(0)


@intrinsic
def simd_sum_scaled(typingctx, x, y, ia, ib, l2):
    """`simd_sum` of x against y' with y'_t = float32(float64(float32(float64(y_t) ia)) ib), ia
    and ib float64: with ia = 1 / a and ib = 1 / b (float64) for float32 values a, b, y'_t is
    the float32 (y_t / a) / b, each quotient correctly rounded, so the sum has the bits of
    simd_sum(x, y') without y' ever being stored (`funnel.rerank_kernels`). ia = 1 (or ib = 1)
    leaves y_t unchanged; ib None skips the second product (each costs ~4 conversions per 16
    floats).

    Why float32(float64(y) * (1 / a)) is the correctly rounded y / a: the float64 product is
    within 2^-52 (relative) of y / a, while y / a is never within 2^-49 of a float32 rounding
    midpoint (y = Y 2^e, a = A 2^f, a midpoint M 2^g with Y, A < 2^24 and M odd < 2^25: y -
    M 2^g a is a non-zero multiple of 2^(g+f), so |y / a - M 2^g| >= 2^g / A); both therefore
    round to the same float32, subnormal and overflowing quotients included (tested on 8e7
    random pairs, and bit for bit against the divisions of `truncate.prefix`)."""
    if not (_contiguous_f32(x) and _contiguous_f32(y) and isinstance(l2, types.Boolean)
            and ia == types.float64 and ib in (types.float64, types.none)):
        return None
    return types.float32(x, y, ia, ib, l2), _order1_codegen(1 if ib == types.none else 2)


def _order1_codegen(n_scales):
    """The LLVM code of order 1 for simd_sum (args x, y, l2) or simd_sum_scaled (x, y, ia, ib, l2)
    with n_scales of its scales applied."""
    def codegen(context, builder, signature, args):
        f32, i32 = ir.FloatType(), ir.IntType(32)
        xa = context.make_array(signature.args[0])(context, builder, args[0])
        ya = context.make_array(signature.args[1])(context, builder, args[1])
        d = builder.extract_value(xa.shape, 0)
        n = lambda v: ir.Constant(d.type, v)
        is_l2 = args[-1]

        def scale(v, lanes):
            """v rounded through float64 products by the first n_scales of args[2], args[3]."""
            f64 = ir.DoubleType()
            wide = ir.VectorType(f64, lanes) if lanes > 1 else f64
            for s in args[2:2 + n_scales]:
                if lanes > 1:
                    s = builder.shuffle_vector(builder.insert_element(ir.Constant(wide, None), s, ir.Constant(i32, 0)),
                                               ir.Constant(wide, None), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
                v = builder.fptrunc(builder.fmul(builder.fpext(v, wide), s), v.type)
            return v

        def fma_step(lanes, t, acc):
            """acc + u * v lane-wise with one rounding; u = v = x - y (l2) or u = x, v = y."""
            ty = ir.VectorType(f32, lanes) if lanes > 1 else f32
            load = lambda a: builder.load(builder.bitcast(builder.gep(a.data, [t]), ty.as_pointer()), align=4)
            xv, yv = load(xa), scale(load(ya), lanes)
            diff = builder.fsub(xv, yv)
            name = f"llvm.fma.v{lanes}f32" if lanes > 1 else "llvm.fma.f32"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
            return builder.call(fn, [builder.select(is_l2, diff, xv), builder.select(is_l2, diff, yv), acc])

        def add_halves(v, lanes):
            """lane l of the result = v_l + v_{l + lanes/2}."""
            half = lambda lo: ir.Constant(ir.VectorType(i32, lanes // 2), list(range(lo, lo + lanes // 2)))
            lo = builder.shuffle_vector(v, v, half(0))
            return builder.fadd(lo, builder.shuffle_vector(v, v, half(lanes // 2)))

        m16 = builder.sub(d, builder.srem(d, n(16)))
        acc16 = cgutils.alloca_once_value(builder, ir.Constant(ir.VectorType(f32, 16), [0.0] * 16))
        with cgutils.for_range_slice(builder, n(0), m16, n(16)) as (t0, _):
            builder.store(fma_step(16, t0, builder.load(acc16)), acc16)
        acc8 = cgutils.alloca_once_value(builder, add_halves(builder.load(acc16), 16))
        tail = cgutils.alloca_once_value(builder, m16)
        with builder.if_then(builder.icmp_signed(">=", builder.sub(d, m16), n(8))):
            builder.store(fma_step(8, m16, builder.load(acc8)), acc8)
            builder.store(builder.add(m16, n(8)), tail)
        acc4 = add_halves(builder.load(acc8), 8)
        lane = lambda i: builder.extract_element(acc4, ir.Constant(i32, i))
        s = cgutils.alloca_once_value(builder, builder.fadd(builder.fadd(lane(0), lane(2)),
                                                            builder.fadd(lane(1), lane(3))))
        with cgutils.for_range_slice(builder, builder.load(tail), d, n(1)) as (t, _):
            builder.store(fma_step(1, t, builder.load(s)), s)
        return builder.load(s)

    return codegen


@numba.njit(cache=True)
def l2sqr(x, y, d):
    """Squared L2 distance between the first d entries of x and y (order 1)."""
    return simd_sum(x[:d], y[:d], True)


@numba.njit(cache=True)
def inner(x, y, d):
    """Inner product of the first d entries of x and y (order 1)."""
    return simd_sum(x[:d], y[:d], False)


@numba.njit(cache=True)
def sq_norms(x):
    """||x_i||^2 per row of x (n, d), float32, in faiss's `fvec_norm_L2sqr` order (order 1).
    Serial: O(n d) and memory-bound, it costs less than waking a thread pool."""
    out = np.empty(x.shape[0], dtype=np.float32)
    for i in range(x.shape[0]):
        out[i] = simd_sum(x[i], x[i], False)
    return out


@numba.njit(cache=True, inline="always")
def _lane_fma(a, xt, crow, l2):
    """a[j] = fma(x_t - c_jt, x_t - c_jt, a[j]) (l2) or fma(x_t, c_jt, a[j]), for all j."""
    if l2:
        for j in range(a.shape[0]):
            u = xt - crow[j]
            a[j] = fma(u, u, a[j])
    else:
        for j in range(a.shape[0]):
            a[j] = fma(xt, crow[j], a[j])


@numba.njit(cache=True, inline="always")
def _add_into(a, b):
    for j in range(a.shape[0]):
        a[j] = a[j] + b[j]


@numba.njit(cache=True)
def simd_sums(x, ct, l2, acc):
    """simd_sum(x, c_j, l2) for every column c_j of ct (d, m) at once; acc (16, m) float32
    scratch. Returns acc[0] (m,). The 16 lanes are rows of acc and j is the inner loop, so
    LLVM vectorises across the columns."""
    d = ct.shape[0]
    m16 = d - d % 16
    acc[:] = 0
    for t in range(m16):
        _lane_fma(acc[t % 16], x[t], ct[t], l2)
    for l in range(8):
        _add_into(acc[l], acc[l + 8])
    t = m16
    if d - t >= 8:
        for l in range(8):
            _lane_fma(acc[l], x[t + l], ct[t + l], l2)
        t += 8
    for l in range(4):
        _add_into(acc[l], acc[l + 4])
    _add_into(acc[0], acc[2])
    _add_into(acc[1], acc[3])
    _add_into(acc[0], acc[1])
    for r in range(t, d):
        _lane_fma(acc[0], x[r], ct[r], l2)
    return acc[0]


# ----------------------------------------------------------------------- order 2: tables

@numba.njit(cache=True, inline="always")
def _prod(xt, c, l2):
    """(xt - c)^2 (l2) or xt * c, rounded once."""
    u = xt - c if l2 else xt
    return u * u if l2 else u * c


@numba.njit(cache=True, inline="always")
def _term(xt, c, s, l2, fused):
    """s + _prod(xt, c, l2): one rounding (fused) or a multiply then an add."""
    u = xt - c if l2 else xt
    v = u if l2 else c
    return fma(u, v, s) if fused else s + u * v


@numba.njit(cache=True, inline="always")
def _chain_into(x, x0, cbT, l2, fused, out):
    """dsub <= 8: p_0, then one _term per dim. The dims are unrolled so the sum of centroid j
    stays in registers while the loop over j vectorises (faiss's kernel holds 16 centroids per
    AVX-512 register the same way)."""
    dsub = cbT.shape[0]
    zero = np.float32(0)
    x1 = x[x0 + 1] if dsub > 1 else zero
    x2 = x[x0 + 2] if dsub > 2 else zero
    x3 = x[x0 + 3] if dsub > 3 else zero
    x4 = x[x0 + 4] if dsub > 4 else zero
    x5 = x[x0 + 5] if dsub > 5 else zero
    x6 = x[x0 + 6] if dsub > 6 else zero
    x7 = x[x0 + 7] if dsub > 7 else zero
    for j in range(out.shape[0]):
        s = _prod(x[x0], cbT[0, j], l2)
        s = _term(x1, cbT[1, j], s, l2, fused) if dsub > 1 else s
        s = _term(x2, cbT[2, j], s, l2, fused) if dsub > 2 else s
        s = _term(x3, cbT[3, j], s, l2, fused) if dsub > 3 else s
        s = _term(x4, cbT[4, j], s, l2, fused) if dsub > 4 else s
        s = _term(x5, cbT[5, j], s, l2, fused) if dsub > 5 else s
        s = _term(x6, cbT[6, j], s, l2, fused) if dsub > 6 else s
        s = _term(x7, cbT[7, j], s, l2, fused) if dsub > 7 else s
        out[j] = s


@numba.njit(cache=True, inline="always")
def _tree8_into(x, x0, cbT, l2, out):
    """8 <= dsub <= 15: order 1 without its 16-lane part: the products of dims 0..7 added as
    ((p_0 + p_4) + (p_2 + p_6)) + ((p_1 + p_5) + (p_3 + p_7)), then one FMA per further dim."""
    for j in range(out.shape[0]):
        p0, p1 = _prod(x[x0], cbT[0, j], l2), _prod(x[x0 + 1], cbT[1, j], l2)
        p2, p3 = _prod(x[x0 + 2], cbT[2, j], l2), _prod(x[x0 + 3], cbT[3, j], l2)
        p4, p5 = _prod(x[x0 + 4], cbT[4, j], l2), _prod(x[x0 + 5], cbT[5, j], l2)
        p6, p7 = _prod(x[x0 + 6], cbT[6, j], l2), _prod(x[x0 + 7], cbT[7, j], l2)
        out[j] = ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))
    for t in range(8, cbT.shape[0]):
        xt = x[x0 + t]
        for j in range(out.shape[0]):
            out[j] = _term(xt, cbT[t, j], out[j], l2, True)


@numba.njit(cache=True, inline="always")
def _small_ksub_into(x, x0, cbT, l2, out):
    """ksub < 16 at dsub 2 and 4: faiss's scalar leftover loops."""
    for j in range(out.shape[0]):
        p1 = _prod(x[x0 + 1], cbT[1, j], l2)
        if cbT.shape[0] == 2:
            out[j] = _term(x[x0], cbT[0, j], p1, l2, True)
        else:
            p0, p2 = _prod(x[x0], cbT[0, j], l2), _prod(x[x0 + 2], cbT[2, j], l2)
            out[j] = (p0 + p2) + (p1 + _prod(x[x0 + 3], cbT[3, j], l2))


@numba.njit(cache=True, inline="always")
def _table_into(x, x0, cbT, l2, fused, acc, out):
    dsub, ksub = cbT.shape
    if dsub >= 16:
        out[:] = simd_sums(x[x0:x0 + dsub], cbT, l2, acc)
    elif dsub >= 9 or (dsub == 8 and ksub < 16):
        _tree8_into(x, x0, cbT, l2, out)
    elif ksub < 16 and fused and (dsub == 2 or dsub == 4):
        _small_ksub_into(x, x0, cbT, l2, out)
    else:
        _chain_into(x, x0, cbT, l2, fused, out)


@numba.njit(cache=True)
def table_into(x, x0, cbT, l2, fused, acc, out):
    """out[j] = ||x_s - c_j||^2 (l2) or <x_s, c_j> for every centroid j of one sub-quantizer,
    x_s = x[x0 : x0 + dsub], in order 2. cbT (dsub, ksub): the codebook transposed so the loops
    over j vectorise; acc (16, ksub) float32 scratch for dsub >= 16."""
    # a constant l2 in each inlined copy lets LLVM drop the per-element metric tests
    if l2:
        _table_into(x, x0, cbT, True, fused, acc, out)
    else:
        _table_into(x, x0, cbT, False, fused, acc, out)


# ----------------------------------------------------------------------- order 3: ADC sums

@numba.njit(cache=True, inline="always")
def _lane(T, code, l, m16):
    """Lane l of the 16-lane ADC sum: T[l, .] + T[l + 16, .] + ... over full blocks of 16."""
    s = T[l, code[l]]
    for m0 in range(16, m16, 16):
        s += T[m0 + l, code[m0 + l]]
    return s


@numba.njit(cache=True, inline="always")
def tree16(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15):
    """_mm512_reduce_add_ps's tree over 16 lanes."""
    return ((((l0 + l8) + (l4 + l12)) + ((l2 + l10) + (l6 + l14)))
            + (((l1 + l9) + (l5 + l13)) + ((l3 + l11) + (l7 + l15))))


@numba.njit(cache=True, inline="always")
def _lanes16_sum(T, code, m16):
    """The 16 lanes added as _mm512_reduce_add_ps's tree, kept in registers."""
    l0, l1, l2, l3 = _lane(T, code, 0, m16), _lane(T, code, 1, m16), _lane(T, code, 2, m16), _lane(T, code, 3, m16)
    l4, l5, l6, l7 = _lane(T, code, 4, m16), _lane(T, code, 5, m16), _lane(T, code, 6, m16), _lane(T, code, 7, m16)
    l8, l9, l10, l11 = _lane(T, code, 8, m16), _lane(T, code, 9, m16), _lane(T, code, 10, m16), _lane(T, code, 11, m16)
    l12, l13, l14, l15 = (_lane(T, code, 12, m16), _lane(T, code, 13, m16), _lane(T, code, 14, m16),
                          _lane(T, code, 15, m16))
    return tree16(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15)


@numba.njit(cache=True, inline="always")
def _word_lanes(t, w, j, m0):
    """t[(m0 + l) * 256 + byte l of code j's 16 bytes from m0], l = 0..15: the lookups of one
    block of 16 sub-codes, codes as uint64 words w, t the flat (M * 256,) table. With the row
    length a constant, every lookup addresses off one base register (no spilled row pointers)."""
    b = np.uint64(255)
    lo, hi = w[j, m0 // 8], w[j, m0 // 8 + 1]
    o = m0 * 256
    return (t[o + (lo & b)], t[o + 256 + ((lo >> 8) & b)], t[o + 512 + ((lo >> 16) & b)],
            t[o + 768 + ((lo >> 24) & b)], t[o + 1024 + ((lo >> 32) & b)],
            t[o + 1280 + ((lo >> 40) & b)], t[o + 1536 + ((lo >> 48) & b)], t[o + 1792 + (lo >> 56)],
            t[o + 2048 + (hi & b)], t[o + 2304 + ((hi >> 8) & b)], t[o + 2560 + ((hi >> 16) & b)],
            t[o + 2816 + ((hi >> 24) & b)], t[o + 3072 + ((hi >> 32) & b)],
            t[o + 3328 + ((hi >> 40) & b)], t[o + 3584 + ((hi >> 48) & b)], t[o + 3840 + (hi >> 56)])


@numba.njit(cache=True)
def code_distances_words(t, w, out):
    """out[j] = code_distance(T, code j, order 3) for nbits 8 and M % 16 == 0, with T flattened
    to t (M * 256,) and the codes read as little-endian uint64 words w (n, M / 8): byte m of a
    code indexes T[m]. Extracting bytes by shifts costs 2 loads per 16 sub-codes instead of 16
    (scans 1.5x faster); same sums, same bits. M == 16 gets a loop-free body: the lane loop
    costs 30 % even when it runs zero times."""
    M = w.shape[1] * 8
    if M == 16:
        for j in range(w.shape[0]):
            l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15 = _word_lanes(t, w, j, 0)
            out[j] = tree16(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15)
        return
    for j in range(w.shape[0]):
        l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15 = _word_lanes(t, w, j, 0)
        for m0 in range(16, M, 16):
            v = _word_lanes(t, w, j, m0)
            l0, l1, l2, l3 = l0 + v[0], l1 + v[1], l2 + v[2], l3 + v[3]
            l4, l5, l6, l7 = l4 + v[4], l5 + v[5], l6 + v[6], l7 + v[7]
            l8, l9, l10, l11 = l8 + v[8], l9 + v[9], l10 + v[10], l11 + v[11]
            l12, l13, l14, l15 = l12 + v[12], l13 + v[13], l14 + v[14], l15 + v[15]
        out[j] = tree16(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15)


@numba.njit(cache=True, inline="always")
def code_distance(T, code, order):
    """sum_m T[m, code[m]] for one code (M,) and one table T (M, ksub), in order 3."""
    M = code.shape[0]
    s = np.float32(0)
    m_done = 0
    if order == SUM_LANES16 and M >= 16:
        m_done = M - M % 16
        s = _lanes16_sum(T, code, m_done)
    elif order == SUM_GROUPS4:
        for m0 in range(0, M, 4):
            s += ((T[m0, code[m0]] + T[m0 + 1, code[m0 + 1]]) + T[m0 + 2, code[m0 + 2]]) + T[m0 + 3, code[m0 + 3]]
        m_done = M
    for m in range(m_done, M):
        s += T[m, code[m]]
    return s
