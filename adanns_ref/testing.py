"""Comparison helpers for checking an ANN implementation against this oracle (or faiss).

Public and documented so other projects can import them::

    from adanns_ref.testing import assert_knn_equal
    assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5)

k-NN results are only defined up to ties: items at equal distance may come in any order, and a
tie group cut by the k-th position may keep different members. `assert_knn_equal` therefore
compares, per query row, the distances element-wise (rtol/atol) and the ids group-wise: the
positions whose reference distances are equal (within tolerance) form a group whose id *set*
must match, except the group that reaches the end of the row, where only the distances are
compared (faiss's `check_ref_knn_with_draws` follows the same idea). Missing results (-1) must be
at the same positions.

Whether bits can be demanded at all: results computed through BLAS/LAPACK (GEMM distances, QR,
SVD, and training built on them) are the same bits only for a fixed BLAS kernel. OpenBLAS picks
its kernel per CPU at load time, and NumPy, SciPy and faiss each ship their own OpenBLAS, which
may pick different kernels on the same machine (faiss's 0.3.15 falls back to generic Prescott
code on CPUs newer than it, or picks Zen where NumPy's picks SkylakeX). `blas_kernels_agree`
answers "do these libraries run the same kernel?" from threadpoolctl's report; tests assert bits
only then, and documented tolerances (e.g. `QR_ATOL_ACROSS_KERNELS`) otherwise. Setting the
environment variable ADANNS_REF_FORCE_BLAS_MISMATCH=1 makes it answer "no", so that CI, whose
machines pin OPENBLAS_CORETYPE, also runs the tolerance branch. Our own kernels (`core.simd`) against faiss's SIMD
orders do not depend on BLAS and stay bit-exact.
"""
import functools
import importlib
import os

import numpy as np


def _check_pair_shapes(a, b, what):
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes differ, reference {a.shape} vs {b.shape}")


def _tie_groups(d_row, rtol, atol):
    """Split positions 0..k-1 into runs of (approximately) equal reference distance."""
    groups, start = [], 0
    for j in range(1, len(d_row) + 1):
        if j == len(d_row) or not np.isclose(d_row[j], d_row[start], rtol=rtol, atol=atol):
            groups.append((start, j))
            start = j
    return groups


def assert_knn_equal(D_ref, I_ref, D, I, rtol=1e-5, atol=1e-6):
    """Assert two k-NN results agree up to ties; raise AssertionError naming the first mismatch."""
    D_ref, I_ref, D, I = (np.asarray(a) for a in (D_ref, I_ref, D, I))
    _check_pair_shapes(D_ref, D, "distances")
    _check_pair_shapes(I_ref, I, "ids")
    _check_pair_shapes(D_ref, I_ref, "reference distances vs ids")
    missing_ref, missing = I_ref < 0, I < 0
    if not np.array_equal(missing_ref, missing):
        q = int(np.flatnonzero((missing_ref != missing).any(axis=1))[0])
        raise AssertionError(f"query {q}: missing results (-1) at different positions: {I_ref[q]} vs {I[q]}")
    valid = ~missing_ref
    close = np.isclose(D, D_ref, rtol=rtol, atol=atol) | ~valid
    if not close.all():
        q, j = (int(v) for v in np.argwhere(~close)[0])
        raise AssertionError(f"query {q}, rank {j}: distance {D[q, j]!r} vs reference {D_ref[q, j]!r} "
                             f"(rtol={rtol}, atol={atol})")
    for q in np.flatnonzero((I != I_ref).any(axis=1)):
        n_valid = int(valid[q].sum())
        for start, stop in _tie_groups(D_ref[q, :n_valid], rtol, atol):
            if stop == n_valid:
                break  # the group cut at k may hold different members of the same tie
            if set(I_ref[q, start:stop].tolist()) != set(I[q, start:stop].tolist()):
                raise AssertionError(f"query {q}, ranks {start}..{stop - 1}: ids {I[q, start:stop]} vs "
                                     f"reference {I_ref[q, start:stop]} (same distances, different items)")


def assert_codes_equal(codes_ref, codes):
    """Assert PQ codes are identical byte for byte; report the first differing vector."""
    codes_ref, codes = np.asarray(codes_ref), np.asarray(codes)
    _check_pair_shapes(codes_ref, codes, "codes")
    if codes_ref.dtype != codes.dtype:
        raise AssertionError(f"codes: dtype {codes.dtype} vs reference {codes_ref.dtype}")
    diff = codes_ref != codes
    if diff.any():
        n = int(np.flatnonzero(diff.reshape(len(codes), -1).any(axis=1))[0])
        raise AssertionError(f"codes differ for {int(diff.reshape(len(codes), -1).any(axis=1).sum())} "
                             f"vectors; first is vector {n}: {codes[n]} vs reference {codes_ref[n]}")


def assert_centroids_equal(c_ref, c, exact=True, rtol=1e-6, atol=0.0):
    """Assert centroids agree bit for bit (exact=True) or within rtol/atol; report max deviation."""
    c_ref, c = np.asarray(c_ref), np.asarray(c)
    _check_pair_shapes(c_ref, c, "centroids")
    if exact:
        ok = np.array_equal(c_ref, c)
    else:
        ok = np.allclose(c, c_ref, rtol=rtol, atol=atol)
    if not ok:
        dev = np.abs(c.astype(np.float64) - c_ref.astype(np.float64))
        row = int(np.unravel_index(np.argmax(dev), dev.shape)[0])
        raise AssertionError(f"centroids differ ({'bit-exact' if exact else f'rtol={rtol}'} required): "
                             f"max abs deviation {dev.max():.3g} in centroid {row}, "
                             f"{int((dev > 0).any(axis=1).sum())} centroids differ")


def max_deviation(a_ref, a):
    """Largest absolute difference, ignoring positions where both are the same +/-FLT_MAX pad."""
    a_ref, a = np.asarray(a_ref, np.float64), np.asarray(a, np.float64)
    both_pad = (np.abs(a_ref) >= 3.4e38) & (a_ref == a)
    dev = np.where(both_pad, 0.0, np.abs(a_ref - a))
    return float(dev.max()) if dev.size else 0.0


# ------------------------------------------------------------------ BLAS kernels

FORCE_BLAS_MISMATCH = "ADANNS_REF_FORCE_BLAS_MISMATCH"
BLAS_LIBRARIES = ("numpy", "scipy", "faiss")  # ours: NumPy (GEMM) and SciPy (QR, SVD); the peer: faiss

# Kernels measured to give the same bits in the OpenBLAS builds that faiss 1.15 (0.3.15), SciPy
# (0.3.30) and NumPy 2.4 (0.3.31) ship, for the QR, SVD and GEMM sizes tested here (faiss's random
# rotations up to d = 128, the golden OPQ cases). Other kernels count as the same only within one
# version: SkylakeX's QR of a random 8 x 8 matrix differs by 1.5e-7 between 0.3.15 and 0.3.30.
SAME_BITS_ACROSS_VERSIONS = {("openblas", "Haswell")}

# faiss's random rotation (float_randn + LAPACK QR) on two different kernels: the largest absolute
# deviation allowed per entry. Measured <= 2.7e-6 up to d = 128 over 7 pairs of NumPy/SciPy and
# faiss kernels among Prescott, Sandybridge, Haswell, SkylakeX and Zen.
QR_ATOL_ACROSS_KERNELS = 1e-5


def _import(library):
    """The module whose import loads `library`'s BLAS (scipy: scipy.linalg), or None if absent."""
    try:
        return importlib.import_module("scipy.linalg" if library == "scipy" else library)
    except ImportError:
        return None


@functools.lru_cache(maxsize=None)
def _blas_of(library):
    """threadpoolctl's record of the BLAS that `library` loaded, or None (absent or not found).

    A wheel's BLAS sits inside the package or in the `<package>*.libs` folder next to it
    (auditwheel, delvewheel); when the process holds a single BLAS, every library uses that one.
    """
    if _import(library) is None:
        return None
    from threadpoolctl import threadpool_info
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    root = os.path.dirname(os.path.realpath(importlib.import_module(library).__file__))
    for info in blas:
        path = os.path.realpath(info["filepath"])
        folder = os.path.dirname(path)
        if (path.startswith(root + os.sep)
                or (os.path.dirname(folder) == os.path.dirname(root)
                    and os.path.basename(folder).startswith(library) and folder.endswith(".libs"))):
            return info
    return blas[0] if len(blas) == 1 else None


def blas_kernels(libraries=BLAS_LIBRARIES):
    """{library: {"internal_api", "version", "architecture"}} of the BLAS each of `libraries`
    ("numpy", "scipy", "faiss") runs, e.g. {"numpy": {"internal_api": "openblas", "version":
    "0.3.31.188.0", "architecture": "SkylakeX"}}; None for a library that is absent or whose BLAS
    was not found. JSON-ready (golden manifests store it)."""
    out = {}
    for library in libraries:
        info = _blas_of(library)
        out[library] = None if info is None else {
            key: info.get(key) for key in ("internal_api", "version", "architecture")}
    return out


def _same_kernel(a, b):
    """Two blas_kernels entries run the same code: same API and architecture (None, as MKL
    reports, is unknown), and the same version unless the kernel is in SAME_BITS_ACROSS_VERSIONS."""
    if a is None or b is None or not a.get("architecture"):
        return False
    kernel = (a.get("internal_api"), a.get("architecture"))
    return (kernel == (b.get("internal_api"), b.get("architecture"))
            and (a.get("version") == b.get("version") or kernel in SAME_BITS_ACROSS_VERSIONS))


def blas_mismatch_forced():
    """True when ADANNS_REF_FORCE_BLAS_MISMATCH is set to anything but "" or "0"."""
    return os.environ.get(FORCE_BLAS_MISMATCH, "") not in ("", "0")


def blas_kernels_agree(libraries=BLAS_LIBRARIES):
    """True iff all `libraries` run one BLAS kernel, so the same GEMM, QR or SVD gives them the
    same bits: they load the same BLAS file, or their kernels are the same (`_same_kernel`).
    False when a kernel is unknown, or when ADANNS_REF_FORCE_BLAS_MISMATCH is set."""
    if blas_mismatch_forced():
        return False
    infos = [_blas_of(library) for library in libraries]
    if any(info is None for info in infos):
        return False
    if len({os.path.realpath(info["filepath"]) for info in infos}) == 1:
        return True
    kernels = list(blas_kernels(libraries).values())
    return all(_same_kernel(kernels[0], k) for k in kernels[1:])


def blas_kernels_match(recorded):
    """True iff every library of `recorded` (a `blas_kernels` result from the machine that
    computed a stored result) runs the same kernel here, so recomputing gives the stored bits.
    False when a kernel is unknown, or when ADANNS_REF_FORCE_BLAS_MISMATCH is set."""
    if blas_mismatch_forced() or not recorded:
        return False
    here = blas_kernels(tuple(recorded))
    return all(_same_kernel(recorded[library], here[library]) for library in recorded)
