"""FunnelIndex: a database prepared once for many funnel searches (adaptive retrieval, funnels).

`funnel.funnel_search(db, q, stages)` derives everything from the raw database at every call:
the d_0-prefix of all N rows for stage 0 (with normalize=True each row's full-D norm is needed,
so all N x D floats are read) and, per re-rank stage, the scales of the shortlisted rows. A
FunnelIndex does this once, for the prefix sizes `dims` it is given:

    s_1 (N,) float64         full-D norms of the rows (normalize=True; `truncate.row_scales`)
    s_2^(d) (N,) float64     norms of the truncated, once-normalised rows, per prepared d
    blocks^(d) (N/16, d, 16) the d-prefix z_d = t_d(x / s_1) / s_2^(d) in the scan layout of
                             `funnel.kernels` (prepared d <= SCAN_MAX_DIM only)
    ||z_d||^2 (N,) float32   its squared row norms, for the BLAS form of query batches (same d)

so that `search` reads N x d_0 floats for stage 0 (16 MB at N = 250,000, d_0 = 16, against 2 GB
for the full database) and k_{i-1} x d_i floats per query for re-rank stage i, straight from the
rows of the database, which is kept by reference: a memory map stays on disk and only
shortlisted rows are paged in. Memory: 8 N (1 + #dims) bytes of scales plus 4 N (d + 1) per scan
layout and its norms (`nbytes`).

search(q, stages) returns exactly what funnel_search(db, q, stages) returns with the same metric
and normalize (same kernels, same bits; tested); a stage at a dim that was not prepared is
computed as funnel_search computes it. Preparation reads the database once, in row blocks, and
checks it for NaN/Inf block by block (no N x D temporary).

The database must not change after preparation: the prepared scales and scan layouts describe
the rows as they were, while re-rank stages read the rows as they are, so an edited database
gives results that match neither version. `search` does not re-read the database to check this
(that would cost what the index saves); preparation records a BLAKE2b digest of every byte
(`fingerprint`, read block by block) and `verify()` re-hashes the database
and raises ValueError if it changed (then build a new FunnelIndex).

Shapes and dtypes as in `funnel.py`: db_full (N, D), queries (nq, D), real arrays converted once
to float32; search returns D float32 (nq, k), I int64 (nq, k) and the FLOPs per query.
"""
import hashlib

import numpy as np

from ..core.simd import sq_norms
from ..core.truncate import divide_rows, row_scales
from ..core.validate import as_float32_matrix, as_int, check_metric
from .funnel import check_stages, run_funnel
from .kernels import BLOCK, SCAN_MAX_DIM, to_blocks

PREPARE_BLOCK = 1 << 22  # float32 values of the database read per preparation step (16 MiB)


class FunnelIndex:
    """A database prepared once for repeated funnels at the prefix sizes `dims`.

    Parameters
        db_full      (N, D) float32 (other real arrays converted once; a np.memmap is read in
                     blocks): the full-dimension database
        dims         iterable of int, each in 1..D: the prefix sizes the funnels will use
        metric       str, "l2" or "ip"
        normalize    bool: Matryoshka re-normalised prefixes (True) or plain truncation

    Attributes
        d            int, = D
        ntotal       int, = N
        dims         tuple of int: the prepared prefix sizes
        metric       str
        normalize    bool
        blocks       dict {d: scan layout}: each prefix in the fused-scan block layout
        norms        dict {d: (16 ceil(N / 16),) float32}: the squared norms of those prefixes
                     (`kernels.block_norms`), for the BLAS form of batches
        s1           (N,) float32 or None: the full-D norms (normalize=True)
        s2           dict {d: (N,) float32}: the prefix norms after the first normalisation
        nbytes       int: bytes of the prepared arrays (the database not counted)
        fingerprint  str: hex BLAKE2b of the database bytes at preparation (see `verify`)
    """

    def __init__(self, db_full, dims, metric="l2", normalize=True):
        self.metric = check_metric(metric)
        if not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be True or False, got {normalize!r}")
        self.normalize = bool(normalize)
        db = as_float32_matrix(db_full, "db_full", check_finite=False)  # checked per block below
        self.db, (self.ntotal, self.d) = db, db.shape
        try:
            dims = [as_int(d, "dims entry", 1, self.d) for d in dims]
        except TypeError:
            if isinstance(dims, (int, np.integer)):
                raise TypeError(f"dims must be a list of prefix sizes, e.g. [{dims}], got {dims!r}") from None
            raise
        if not dims:
            raise ValueError("dims is empty; give the prefix sizes to prepare, e.g. [16, 2048]")
        self.dims = tuple(sorted(set(dims)))
        n = self.ntotal
        self.s1 = np.empty(n, dtype=np.float64) if self.normalize else None
        self.s2 = {d: np.empty(n, dtype=np.float64) for d in self.dims} if self.normalize else {}
        self.blocks = {d: np.empty((-(-n // BLOCK), d, BLOCK), dtype=np.float32)
                       for d in self.dims if d <= SCAN_MAX_DIM}
        self.norms = {d: np.zeros(-(-n // BLOCK) * BLOCK, dtype=np.float32) for d in self.blocks}
        rows = max(BLOCK, PREPARE_BLOCK // self.d // BLOCK * BLOCK)  # a multiple of BLOCK
        for i0 in range(0, n, rows):
            self._prepare_rows(i0, min(i0 + rows, n))
        self.fingerprint = self._digest()

    def _digest(self):
        rows = max(BLOCK, PREPARE_BLOCK // self.d // BLOCK * BLOCK)
        digest = hashlib.blake2b(digest_size=16)
        for i0 in range(0, self.ntotal, rows):
            digest.update(memoryview(np.ascontiguousarray(self.db[i0:i0 + rows])).cast("B"))
        return digest.hexdigest()

    def verify(self):
        """Re-hash the database (one read of N x D floats, in blocks) and raise ValueError if it
        changed since preparation: searches would then mix old scales with new rows."""
        if self._digest() != self.fingerprint:
            raise ValueError("the database of this FunnelIndex was modified after it was prepared; "
                             "its scales and scan layouts are stale: build a new FunnelIndex")
        return self

    def _prepare_rows(self, i0, i1):
        """Scales and scan layouts of rows i0..i1 (i0 a multiple of BLOCK), as truncate.prefix
        computes them (same operations, same bits)."""
        x = self.db[i0:i1]
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise ValueError(f"db_full contains NaN or Inf (first in row {i0 + int(np.argmin(finite))}); "
                             f"clean or drop those rows")
        if self.normalize:
            self.s1[i0:i1] = row_scales(x)
        for d in self.dims:
            if self.normalize:
                head = divide_rows(x[:, :d], self.s1[i0:i1])
                self.s2[d][i0:i1] = row_scales(head)
            if d in self.blocks:
                z = divide_rows(head, self.s2[d][i0:i1]) if self.normalize else x[:, :d]
                b0 = i0 // BLOCK
                self.blocks[d][b0:b0 + -(-(i1 - i0) // BLOCK)] = to_blocks(z)
                self.norms[d][i0:i1] = sq_norms(np.ascontiguousarray(z))

    @property
    def nbytes(self):
        scales = [] if self.s1 is None else [self.s1, *self.s2.values()]
        return sum(a.nbytes for a in [*scales, *self.blocks.values(), *self.norms.values()])

    def search(self, q_full, stages):
        """Run a funnel -> (D, I, flops), as `funnel.funnel_search(db_full, q_full, stages,
        metric, normalize)` does on the prepared database."""
        q = as_float32_matrix(q_full, "q_full", d=self.d)
        return run_funnel(self.db, q, check_stages(stages, self.d, q.shape[0]), self.metric, self.normalize, self)

    def __repr__(self):
        return (f"FunnelIndex(ntotal={self.ntotal}, d={self.d}, dims={list(self.dims)}, "
                f"metric={self.metric!r}, normalize={self.normalize})")
