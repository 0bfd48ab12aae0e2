"""4-bit code packing of fast-scan, bbs = 32: faiss 1.15 ``pq4_pack_codes`` / ``CodePackerPQ4``.

A PQ code of M 4-bit sub-codes c_0 .. c_{M-1} is stored by faiss's ``ProductQuantizer`` as
ceil(M / 2) bytes, c_{2i} in the low nibble of byte i and c_{2i+1} in the high one. Fast-scan
re-lays them out in blocks of bbs = 32 vectors so that one 32-byte load feeds a SIMD shuffle:

    block b (vectors 32 b .. 32 b + 31) = M2 / 2 chunks of 32 bytes, chunk p for the pair of
    sub-quantizers (2p, 2p + 1), M2 = M rounded up to even (the extra sub-code is 0):
      byte j      (j < 16): low nibble = c_{2p}   of vector perm(j),      high = of perm(j) + 16
      byte 16 + j (j < 16): low nibble = c_{2p+1} of vector perm(j),      high = of perm(j) + 16
    with perm(j) = j / 2 + 8 (j mod 2), i.e. perm = 0, 8, 1, 9, ..., 7, 15 (little-endian x86).

Rows past n in the last block are zero. Shapes: sub (n, M) uint8 (values < 16) ->
blocks (ceil(n / 32), M2 / 2 * 32) uint8; `unpack_codes` inverts it.
"""
import numpy as np

BBS = 32
PERM0 = np.array([0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15], np.int64)

__all__ = ["BBS", "PERM0", "pack_codes", "unpack_codes", "split_nibbles", "join_nibbles"]


def split_nibbles(codes, M):
    """faiss PQ codes (n, ceil(M / 2)) uint8 -> sub-codes (n, M) uint8."""
    codes = np.asarray(codes, np.uint8)
    sub = np.empty((codes.shape[0], 2 * codes.shape[1]), np.uint8)
    sub[:, 0::2] = codes & 15
    sub[:, 1::2] = codes >> 4
    return np.ascontiguousarray(sub[:, :M])


def join_nibbles(sub):
    """sub-codes (n, M) uint8 -> faiss PQ codes (n, ceil(M / 2)) uint8."""
    n, M = sub.shape
    s = np.zeros((n, M + (M & 1)), np.uint8)
    s[:, :M] = sub
    return np.ascontiguousarray(s[:, 0::2] | (s[:, 1::2] << 4))


def pack_codes(sub):
    """Blocks (nblocks, M2 / 2 * 32) uint8 of the sub-codes (n, M) uint8, as faiss packs them."""
    sub = np.asarray(sub, np.uint8)
    n, M = sub.shape
    M2 = M + (M & 1)
    nb = -(-n // BBS)
    s = np.zeros((nb * BBS, M2), np.uint8)
    s[:n, :M] = sub
    s = s.reshape(nb, BBS, M2 // 2, 2)            # block, vector, pair p, (2p, 2p + 1)
    lo = s[:, PERM0]                                # vectors perm(j), j < 16
    hi = s[:, PERM0 + 16]                           # vectors perm(j) + 16
    chunk = lo | (hi << 4)                          # (nb, 16, M2/2, 2)
    out = chunk.transpose(0, 2, 3, 1)               # (nb, M2/2, 2, 16): bytes j, 16 + j
    return np.ascontiguousarray(out.reshape(nb, M2 // 2 * BBS))


def unpack_codes(blocks, n, M):
    """Sub-codes (n, M) uint8 from blocks written by `pack_codes` (faiss ``CodePackerPQ4``)."""
    blocks = np.asarray(blocks, np.uint8)
    M2 = M + (M & 1)
    nb = blocks.shape[0]
    c = blocks.reshape(nb, M2 // 2, 2, 16).transpose(0, 3, 1, 2)   # (nb, 16, M2/2, 2)
    s = np.empty((nb, BBS, M2 // 2, 2), np.uint8)
    s[:, PERM0] = c & 15
    s[:, PERM0 + 16] = c >> 4
    return np.ascontiguousarray(s.reshape(nb * BBS, M2)[:n, :M])
