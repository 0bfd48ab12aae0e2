"""The four-lane partial sums of Panorama's level dot products, several rows at once, in LLVM
vector IR.

For a query slice q[q0:q0+m] and rows r starting at y[base + rows_r * stride] (m a multiple
of 4), lane j of row r is

    a_{r,j} = (((0 + q_j y_j) + q_{j+4} y_{j+4}) + q_{j+8} y_{j+8}) + ...     (j = 0 .. 3)

each product rounded, then each add rounded (no fused multiply-add): the first step of order P4
in `kernels`, which combines the lanes into the dot product. Written with numba's scalar
indexing these sums stay scalar (the negative-index wrap-around of every load defeats LLVM's
vectoriser), four times the instructions faiss's vectorised loop needs. Here each row's four
lanes are one <4 x float> register, and the rows of a call are independent chains the CPU
overlaps: the float32 results are the same bits, only faster.
"""
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def lane_sums(typingctx, q, q0, y, base, rows, stride, m):
    """(a_{0,0}, a_{0,1}, a_{0,2}, a_{0,3}, a_{1,0}, ...) float32 of the R rows starting at
    y[base + rows[r] * stride] (see the module docstring). q, y: C-contiguous float32 1-D; q0,
    base, stride, m: integers (m % 4 == 0; every slice within bounds, unchecked); rows: UniTuple
    of R integers."""
    def contiguous_f32(a):
        return (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1
                and a.layout == "C")

    if not (contiguous_f32(q) and contiguous_f32(y) and isinstance(rows, types.UniTuple)
            and isinstance(rows.dtype, types.Integer)
            and all(isinstance(v, types.Integer) for v in (q0, base, stride, m))):
        return None  # not typed for these arguments: numba reports the mismatch
    n_rows = rows.count

    def codegen(context, builder, signature, args):
        f32, i64 = ir.FloatType(), ir.IntType(64)
        v4 = ir.VectorType(f32, 4)
        qa = context.make_array(signature.args[0])(context, builder, args[0])
        ya = context.make_array(signature.args[2])(context, builder, args[2])
        as64 = lambda v, ty: context.cast(builder, v, ty, types.int64)
        q0v, basev, stridev, mv = (as64(args[i], signature.args[i]) for i in (1, 3, 5, 6))
        offs = [builder.add(basev, builder.mul(as64(builder.extract_value(args[4], r),
                                                     rows.dtype), stridev))
                for r in range(n_rows)]

        def load4(data, at):
            return builder.load(builder.bitcast(builder.gep(data, [at]), v4.as_pointer()),
                                align=4)

        accs = [cgutils.alloca_once_value(builder, ir.Constant(v4, [0.0] * 4))
                for _ in range(n_rows)]
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), mv,
                                     ir.Constant(i64, 4)) as (t, _):
            qv = load4(qa.data, builder.add(q0v, t))
            for r in range(n_rows):
                prod = builder.fmul(qv, load4(ya.data, builder.add(offs[r], t)))
                builder.store(builder.fadd(builder.load(accs[r]), prod), accs[r])
        lanes = [builder.extract_element(builder.load(accs[r]), ir.Constant(ir.IntType(32), j))
                 for r in range(n_rows) for j in range(4)]
        return context.make_tuple(builder, signature.return_type, lanes)

    return types.UniTuple(types.float32, 4 * n_rows)(q, q0, y, base, rows, stride, m), codegen
