"""The randomized Hadamard rotation RaBitQ puts in front of its codes: faiss 1.15.1 ``HadamardRotation``
(index_factory ``HR``), bit for bit.

Maths: with p = the smallest power of 2 >= d, x zero-padded to p, H the unnormalized p x p
Walsh-Hadamard matrix and S1, S2, S3 diagonal +-1 matrices,

    y = H S3 H S2 H S1 x / p^(3/2)

an orthonormal map (each H scales norms by sqrt(p)) costing O(p log p) additions per vector, no
matrix and no LAPACK. Sign draws (faiss ``generate_signs``): a SplitMix64 generator seeded with
the uint32 seed (default 12345) gives s1 (p draws), then s2, then s3; a draw's sign is -1 iff the
64-bit output is even. faiss's ``train`` reseeds with 12345 when the seed is 0; we do so at
construction (deviation: faiss's untrained ``HadamardRotation(d, 0)`` uses seed 0's signs).

Butterfly order (faiss ``fwht_inplace``): step = 1, 2, 4, ..., p / 2; for each block of 2 step
and each j in its first half, (a, b) -> (a + b, a - b), in float32. The scale 1 / (p sqrt(p)) is
rounded once in float32 and multiplied in at the end. Every step is exact IEEE float32 and in
faiss's order, so the output equals faiss's bit for bit.

Prefix-aware: `apply` accepts vectors wider than d and rotates their first d columns, the
Matryoshka prefix (a funnel stage at d of full-width vectors), as ``HadamardRotation(d)`` on
``x[:, :d]``.

Shapes: apply (n, >= d) float32 -> (n, p) float32; signs (3, p) float32.
"""
import numba
import numpy as np

from ..core.validate import as_float32_matrix, as_int

_MASK64 = (1 << 64) - 1


def splitmix64(seed, count):
    """faiss ``SplitMix64RandomGenerator(seed).next()`` count times, as Python ints."""
    state = seed & _MASK64
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def hadamard_signs(seed, p):
    """(3, p) float32 sign vectors s1, s2, s3 (faiss ``generate_signs``)."""
    draws = np.array(splitmix64(seed, 3 * p), dtype=np.uint64)
    return np.where(draws % 2 == 0, np.float32(-1), np.float32(1)).astype(np.float32).reshape(3, p)


@numba.njit(cache=True, inline="always")
def _fwht(v):
    p = v.shape[0]
    step = 1
    while step < p:
        for i in range(0, p, 2 * step):
            for j in range(i, i + step):
                a, b = v[j], v[j + step]
                v[j] = a + b
                v[j + step] = a - b
        step *= 2


@numba.njit(cache=True, parallel=True)
def rotate(x, d, signs, out):
    """out[i] = H S3 H S2 H S1 [x[i, :d], 0] / p^(3/2), float32, faiss's order."""
    p = out.shape[1]
    scale = np.float32(1) / (np.float32(p) * np.sqrt(np.float32(p)))
    for i in numba.prange(x.shape[0]):
        v = out[i]
        for j in range(d):
            v[j] = x[i, j] * signs[0, j]
        v[d:] = 0
        _fwht(v)
        for r in (1, 2):
            for j in range(p):
                v[j] *= signs[r, j]
            _fwht(v)
        for j in range(p):
            v[j] *= scale


class HadamardRotation:
    """faiss ``HadamardRotation(d, seed)``: a seeded orthonormal rotation of R^d into R^p.

    Parameters:
        d: int, input dimension (a prefix of wider vectors is accepted by `apply`)
        seed: int in [0, 2^32), faiss's uint32 seed (0 means 12345, as faiss's train does)

    Attributes:
        d_out: int, p = the smallest power of 2 >= d
        signs: (3, p) float32, the sign flips s1, s2, s3
    """

    def __init__(self, d, seed=12345):
        self.d = as_int(d, "d", low=1, high=1 << 24)
        self.seed = as_int(seed, "seed", low=0, high=(1 << 32) - 1) or 12345
        self.d_out = 1 << (self.d - 1).bit_length()
        self.signs = hadamard_signs(self.seed, self.d_out)

    def apply(self, x):
        """Rotate the first d columns of x (n, >= d) -> (n, d_out) float32."""
        x = as_float32_matrix(x, "x")
        if x.shape[1] < self.d:
            raise ValueError(f"x has {x.shape[1]} columns, fewer than the rotation's d={self.d}")
        out = np.empty((x.shape[0], self.d_out), np.float32)
        rotate(x, self.d, self.signs, out)
        return out

    def __repr__(self):
        return f"HadamardRotation(d={self.d}, seed={self.seed}, d_out={self.d_out})"
