"""Exhaustive (OPQ+)PQ search over Matryoshka prefixes.

PQIndex. With z_d the d-dim Matryoshka prefix of a D-dim vector (`truncate.prefix`: normalise
at D, truncate to d = prefix_dim, normalise again; ``normalize=False``: plain truncation), the
index stores ceil(M * nbits / 8)-byte PQ codes (M bytes at nbits = 8) of

    y = R z_d        (R: the OPQ rotation, d x d, when opq=True; identity otherwise)

and answers a query q by ADC over all N codes: D(q, x) = sum_m T_q[m, code_m(x)] with T_q the
distance table of R q_d (squared L2 to the reconstruction; `pq.ProductQuantizer.search`).

faiss-identical: with opq=False, prefix_dim=None (or D) and normalize=False this is faiss
``IndexPQ(D, M, nbits)``; with opq=True it is ``IndexPreTransform(OPQMatrix(d, M), IndexPQ(d, M,
nbits))`` on the prefixes (the OPQ trains its own 8-bit PQ, as faiss's, whatever nbits the index
uses). See `pq` and `opq` for what is bit-identical.

Cost per query (`last_search_flops`, `cost.adc_flops`): the ADC table M * ksub * dsub * 3, plus
d^2 for the OPQ rotation; `last_search_lookups` = N * M table reads.

AdANNS-OPQ (`evaluation.sweeps.adannsopq_sweep`): for a byte budget M, build a PQIndex at every admissible prefix
d (d >= M, d % M == 0) and keep the d with the best top-1 accuracy; rigid baselines are the same
call on a rigid embedding with dims=[D].
"""
import numpy as np

from ..core import cost
from ..core.persist import load_npz, save_npz
from ..core.truncate import prefix
from ..core.validate import as_bool, as_float32_matrix, as_int, check_prefix_dim
from ..quantizers.opq import OPQ
from ..quantizers.pq import ProductQuantizer

_KIND, _VERSION = "PQIndex", 1
_ORTHO_TOL = 1e-3  # a loaded OPQ rotation must satisfy max |A A^T - I| below this


class PQIndex:
    """Exhaustive (OPQ+)PQ index over the prefix_dim-dim prefixes of D-dim vectors.

    Parameters
        d             int, = D: input width
        M             int: sub-quantizers (code bytes at nbits = 8), prefix_dim % M == 0
        nbits         int in 1..16: bits per sub-code
        opq           bool: learn a rotation first
        prefix_dim    int in 1..D: indexed prefix (default D)
        normalize     bool: Matryoshka re-normalised prefixes
        seed          int: k-means and OPQ seed
        allow_small   bool: no `SmallTrainingSetWarning` below 39 * ksub training points (see
                      `quantizers.pq`; training happens either way)
        opq_niter     int: OPQ outer iterations (faiss's default 50)

    Attributes
        dim                   int, = prefix_dim
        pq                    ProductQuantizer over dim
        opq                   OPQ or None
        codes                 (ntotal, code_size) uint8
        ntotal                int
        code_size             int: bytes per code
        is_trained            bool
        last_search_flops     int: FLOPs per query of the last search
        last_search_lookups   int: table lookups per query of the last search
    """

    def __init__(self, d, M, nbits=8, opq=False, prefix_dim=None, normalize=True, seed=1234,
                 allow_small=False, opq_niter=50):
        self.d = as_int(d, "d", low=1)
        self.dim = check_prefix_dim(prefix_dim, self.d, "prefix_dim")
        self.use_opq = as_bool(opq, "opq")
        self.normalize = as_bool(normalize, "normalize")
        self.allow_small = as_bool(allow_small, "allow_small")
        self.opq_niter = as_int(opq_niter, "opq_niter", low=1)
        self.pq = ProductQuantizer(self.dim, M, nbits, seed=seed, allow_small=self.allow_small)
        self.M, self.nbits, self.seed = self.pq.M, self.pq.nbits, self.pq.seed
        self.opq = None
        self.codes = np.empty((0, self.pq.code_size), dtype=np.uint8)
        self.last_search_flops = 0
        self.last_search_lookups = 0

    @property
    def code_size(self):
        return self.pq.code_size

    @property
    def ntotal(self):
        return int(self.codes.shape[0])

    @property
    def is_trained(self):
        return self.pq.codebooks is not None and (self.opq is not None or not self.use_opq)

    def _params(self):
        return {"d": self.d, "M": self.M, "nbits": self.nbits, "opq": self.use_opq,
                "prefix_dim": self.dim, "normalize": self.normalize, "seed": self.seed,
                "allow_small": self.allow_small, "opq_niter": self.opq_niter}

    def _prefix(self, x, name):
        x = as_float32_matrix(x, name, d=self.d)
        return prefix(x, self.dim, self.normalize)

    def _transform(self, x, name):
        z = self._prefix(x, name)
        return z if self.opq is None else self.opq.apply(z)

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"PQIndex.{verb} called before train(); call train(x) first")

    def train(self, x):
        """Learn the OPQ rotation (opq=True) and the PQ codebooks from x (n, D). Returns self.

        An index holding codes refuses (they were encoded with the old codebooks): reset() first.
        The index is only modified once every step has succeeded."""
        z = self._prefix(x, "x")
        if self.ntotal:
            raise ValueError(f"the index holds {self.ntotal} vectors encoded with the old "
                             f"parameters; call reset() before re-training")
        opq = None
        if self.use_opq:
            opq = OPQ(self.dim, self.M, niter=self.opq_niter, seed=self.seed,
                      allow_small=self.allow_small).train(z)
            z = opq.apply(z)
        old = self.pq
        pq = ProductQuantizer(self.dim, self.M, self.nbits, seed=self.seed, niter=old.niter,
                              max_points_per_centroid=old.max_points_per_centroid,
                              allow_small=self.allow_small).train(z)
        self.pq, self.opq = pq, opq
        return self

    def reset(self):
        """Remove all codes; rotation and codebooks are kept (faiss ``IndexPQ.reset``)."""
        self.codes = np.empty((0, self.pq.code_size), dtype=np.uint8)

    def add(self, x):
        """Encode and append the rows of x (n, D); they get ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        self.codes = np.concatenate([self.codes, self.pq.encode(self._transform(x, "x"))])

    def search(self, q, k):
        """ADC k-NN of each query row (nq, D) -> (D float32 (nq, k), I int64 (nq, k))."""
        self._require_trained("search")
        y = self._transform(q, "q")
        D, I = self.pq.search(self.codes, y, k)
        adc = cost.adc_flops(self.M, self.pq.ksub, self.pq.dsub, self.ntotal)
        self.last_search_flops = adc["table_flops"] + (self.dim * self.dim if self.use_opq else 0)
        self.last_search_lookups = adc["lookups"]
        return D, I

    def save(self, path):
        """Write parameters, codebooks, rotation and codes to a versioned .npz file (atomic)."""
        cb = self.pq.codebooks
        codebooks = cb if cb is not None else np.empty((0, self.pq.ksub, self.pq.dsub), np.float32)
        A = self.opq.A if self.opq is not None else np.empty((0, self.dim), np.float32)
        save_npz(path, _KIND, _VERSION, self._params(),
                 {"codebooks": codebooks, "A": A, "codes": self.codes})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt, tampered or foreign file raises ValueError."""
        params, a = load_npz(path, _KIND, _VERSION, {
            "codebooks": (np.float32, 3), "A": (np.float32, 2), "codes": (np.uint8, 2)})
        try:
            index = cls(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid PQIndex parameters {params!r} ({exc})") from exc
        try:
            if a["codebooks"].size:
                index.pq.set_codebooks(a["codebooks"])
            if a["A"].size:
                index.opq = _loaded_opq(index, a["A"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        has_A, has_codebooks = index.opq is not None, index.pq.codebooks is not None
        if has_A != (index.use_opq and has_codebooks):  # a trained OPQ index has both, others no A
            raise ValueError(f"{path}: rotation A {'present' if has_A else 'missing'} with opq="
                             f"{index.use_opq} and codebooks {'present' if has_codebooks else 'missing'}")
        codes = a["codes"]
        if codes.shape[1] != index.code_size or (codes.shape[0] and not index.is_trained):
            raise ValueError(f"{path}: codes of shape {codes.shape} do not fit a "
                             f"{'trained' if index.is_trained else 'untrained'} index with "
                             f"code_size {index.code_size}")
        index.codes = np.ascontiguousarray(codes)
        return index

    def __repr__(self):
        return (f"PQIndex(d={self.d}, M={self.M}, nbits={self.nbits}, opq={self.use_opq}, "
                f"prefix_dim={self.dim}, ntotal={self.ntotal})")


def _loaded_opq(index, A):
    """An OPQ holding the rotation A read from a file, after checking it is one."""
    A = as_float32_matrix(A, "A", d=index.dim)
    if A.shape[0] != index.dim:
        raise ValueError(f"rotation A has shape {A.shape}, expected ({index.dim}, {index.dim})")
    err = float(np.abs(A.astype(np.float64) @ A.T.astype(np.float64) - np.eye(index.dim)).max())
    if err > _ORTHO_TOL:
        raise ValueError(f"rotation A is not orthonormal (max |A A^T - I| = {err:.3g})")
    opq = OPQ(index.dim, index.M, niter=index.opq_niter, seed=index.seed, allow_small=index.allow_small)
    opq.A = A
    return opq
