"""faiss's random helpers (``faiss/utils/random.cpp``), reproduced bit for bit.

faiss draws every random choice of k-means, PQ and OPQ from ``std::mt19937`` seeded with the
32-bit truncation of its seed (``RandomGenerator(int64 seed) : mt((unsigned) seed)``):

    rand_int(m)   = next() % m                              (next() is a uint32)
    rand_float()  = float32(next()) / float32(4294967295)   (division in float32)
    rand_perm(n)  : perm = 0..n-1; for i in 0..n-2: j = i + rand_int(n - i); swap(perm[i], perm[j])

NumPy's ``MT19937._legacy_seeding(seed)`` is the same ``init_genrand`` as ``std::mt19937``, so
we seed with NumPy and run the generator itself (the "tempering" and "twist" of Matsumoto &
Nishimura 1998) in numba, which lets kernels such as the empty-cluster split draw numbers
inside a compiled loop. ``MTState`` holds the 624-word key and the read position.
"""
import numba
import numpy as np

_N = 624
_M = 397
_UPPER = np.uint32(0x80000000)
_LOWER = np.uint32(0x7FFFFFFF)
_MATRIX_A = np.uint32(0x9908B0DF)


class MTState:
    """State of one std::mt19937: key (624,) uint32 and pos (1,) int64 (next word to read)."""

    __slots__ = ("key", "pos")

    def __init__(self, seed):
        bg = np.random.MT19937()
        bg._legacy_seeding(int(seed) & 0xFFFFFFFF)
        state = bg.state["state"]
        self.key = np.ascontiguousarray(state["key"], dtype=np.uint32)
        self.pos = np.array([state["pos"]], dtype=np.int64)

    def copy(self):
        other = MTState.__new__(MTState)
        other.key = self.key.copy()
        other.pos = self.pos.copy()
        return other


@numba.njit(cache=True)
def _twist(key):
    """Regenerate all 624 words (the MT19937 recurrence)."""
    for i in range(_N):
        y = (key[i] & _UPPER) | (key[(i + 1) % _N] & _LOWER)
        v = key[(i + _M) % _N] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= _MATRIX_A
        key[i] = v


@numba.njit(cache=True)
def mt_next(key, pos):
    """Next uint32 of the stream (as uint64); advances `pos` (and `key` every 624 draws)."""
    if pos[0] >= _N:
        _twist(key)
        pos[0] = 0
    y = key[pos[0]]
    pos[0] += 1
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return np.uint64(y)


@numba.njit(cache=True)
def mt_rand_float(key, pos):
    """faiss RandomGenerator::rand_float: float32(next()) / float32(2**32 - 1), in float32."""
    return np.float32(mt_next(key, pos)) / np.float32(4294967295.0)


@numba.njit(cache=True)
def _rand_perm_kernel(key, pos, n):
    perm = np.arange(n, dtype=np.int64)
    for i in range(n - 1):
        j = i + np.int64(mt_next(key, pos) % np.uint64(n - i))
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp
    return perm


def rand_perm(n, seed):
    """faiss ``rand_perm(perm, n, seed)``: a permutation of range(n) as int64 (n,)."""
    state = MTState(seed)
    return _rand_perm_kernel(state.key, state.pos, int(n))


def rand_uint32(count, seed):
    """The first `count` raw uint32 draws of std::mt19937(seed) (a test/inspection helper)."""
    bg = np.random.MT19937()
    bg._legacy_seeding(int(seed) & 0xFFFFFFFF)
    return bg.random_raw(int(count)).astype(np.uint32)
