"""IVFPQ (Jégou, Douze & Schmid 2011, "IVFADC") and AdANNS-IVFOPQ: route at d_c, PQ-encode at d_s.

With z_d the d-dim Matryoshka prefix of a D-dim vector (`truncate.prefix`; ``normalize=False``:
plain truncation), N_C = nlist coarse centroids c_l (d_c dims), R the optional OPQ rotation
(d_s x d_s, identity without OPQ) and a product quantizer of M sub-quantizers of ksub = 2^nbits
centroids over dsub = d_s / M dims:

    route:   list(x) = argmin_l ||z_{d_c}(x) - c_l||^2            ("ip": argmax <.,.>)
    encode:  code(x) = PQ(y(x) - s_{list(x)}),  y(x) = R z_{d_s}(x)  (by_residual; else PQ(y(x)))
    search:  P(q) = the nprobe nearest centroids of z_{d_c}(q); for l in P(q) and x in list l,
             with y = y(q) and r = decode(code(x)):
             "l2": d(q, x) = ||y - s_l - r||^2, by default (precomputed=True) in faiss's three terms
                   (``IndexIVFPQ.cpp``, ``precompute_table``):
                     d = ||y - s_l||^2 + sum_m [(||r_m||^2 + 2 <s_lm, r_m>) - 2 <y_m, r_m>]
                   term 1: the coarse search distance (recomputed when routing is not in the
                   encoded space: opq=True or s_l != c_l); term 2: a table (nlist, M, ksub) built
                   at the first search (not kept above faiss's 2 GiB limit: then as below);
                   term 3: one inner-product table per query. precomputed=False: one PQ table of
                   the residual y - s_l per probed list (faiss ``use_precomputed_table = -1``).
                   Without by_residual: one table of y per query.
             "ip": d(q, x) = <y, s_l> + sum_m <y_m, c_{m, code_m(x)}>  (one table per query)
             the k best (ties -> smaller id) are returned, padded with -1 / +-FLT_MAX.

s_l (``scoring_centroids``, nlist x d_s) is the centroid of list l in the space the PQ encodes:
- d_s == d_c: s_l = R c_l, the coarse centroid itself (rotated), exactly as faiss.
- d_s != d_c (AdANNS-IVFOPQ; any order of d_c and d_s): s_l = R m_l, with m_l the mean of the
  d_s-prefixes z_{d_s}(x_i) of the training points routed to list l (float32 sum in input
  order times float32(1 / count), the k-means update rule). Slicing c_l does not work: it does
  not exist when d_s > d_c, and with normalize=True a slice of a d_c-centroid is not in the space
  of re-normalised d_s-prefixes. A list that receives no training point gets the mean of all
  training prefixes, so its residuals stay centred. Without by_residual s_l is not used.

Training (faiss ``IndexIVF::train`` order): coarse k-means on z_{d_c} (`IVFIndex`: niter 10,
max 256 points per centroid); OPQ (``opq=True``) on all z_{d_s} (`opq.OPQ`, which subsamples to
65536 points itself); the PQ on the residuals of at most 256 * ksub points (65536 at nbits 8):
if n is larger, rows perm[:256 * ksub] of rand_perm(n, seed), in that order (faiss
``fvecs_maybe_subsample`` with its seed 1234, our default), routed and reduced to residuals.

Storage: `indices.invlists` (CSR lists of codes). Cost per query (`cost.ivfpq_flops`): d_c * N_C
+ nprobe ADC tables M * ksub * dsub * 3 (one for "ip" or without by_residual) + d_s^2 for OPQ.

faiss-identical, with d_c = d_s = D and normalize=False (normalize=True: the same on the
normalised vectors): opq=False is ``IndexIVFPQ(IndexFlatL2, D, nlist, M, nbits)`` (by_residual,
or ``by_residual=False``; "ip": ``IndexFlatIP`` and METRIC_INNER_PRODUCT); opq=True is
``IndexPreTransform(OPQMatrix(D, M), IndexIVFPQ)``, whose quantizer holds our
`scoring_centroids`. Same coarse centroids, training sample, residuals, codebooks, lists and
codes (measured bit-identical on 3000-5000 x 32 Gaussian data, nbits 4 and 8; see `ivf`,
`kmeans`, `pq`, `opq` for the exact scope). Not identical:
(1) distances are bit-identical where faiss runs AVX-512 and the coarse distances agree (tables
    and sums in faiss's orders, `core.simd`; not at dsub 12). Measured on 60000 x 128, nlist 1024,
    M 16, nprobe 8: all equal for 900 queries (direct coarse distances); for 10000 queries the
    coarse GEMM rounds differently from faiss's, 95 % of the rows equal, the rest within 8e-6
    relative, ids all equal. precomputed=False equals faiss ``use_precomputed_table = -1``;
(2) opq=True: faiss clusters and routes the rotated vectors R x, we route the unrotated prefixes.
    R is orthonormal, so the distances agree up to rounding: trained end to end, faiss's and our
    rotation, rotated centroids and codebooks agree to ~2e-6 (not bit for bit), and a near-tie
    may route differently; with our parameters loaded into faiss, lists and codes are identical;
(3) a subspace k-means on its GEMM path (n * dsub >= 128000) can resolve a near-tie differently
    and drift (`kmeans`; at n = 50000, d = 64, M = 16, 2 of 16 codebooks differed by up to 0.09);
    with the same codebooks loaded, codes and ids were identical; (4) ties as in `ivf`.
"""
import copy
import math

import numpy as np

from ..core import cost
from ..core.mt19937 import rand_perm
from ..core.persist import load_npz, save_npz
from ..core.topk import finalize, new_heaps
from ..core.truncate import prefix
from ..core.validate import (as_bool, as_float32_matrix, as_int, as_k, as_nlist, check_metric,
                             check_prefix_dim, refuse_train_after_add)
from ..distributed import as_rows, map_concat
from ..quantizers.opq import OPQ
from ..quantizers.pq import ProductQuantizer
from ..search.assign import routing_plan, search_centroids
from .invlists import InvertedLists, append_to_lists, check_lists, check_saved_nlist, list_means
from .ivf import IVFIndex
from .ivfpq_kernels import precomputed_table, search_lists

_KIND, _VERSION = "IVFPQIndex", 1
_ORTHO_TOL = 1e-3  # a loaded OPQ rotation must satisfy max |A A^T - I| below this
PRECOMPUTED_TABLE_MAX_BYTES = 1 << 31  # faiss precomputed_table_max_bytes: larger -> residual tables


class IVFPQIndex(InvertedLists):
    """IVFPQ / AdANNS-IVFOPQ over D-dim float32 vectors (see the module docstring).

    Parameters
        d             int, = D
        nlist         int >= 1: cells N_C
        M             int: sub-quantizers, d_s % M == 0
        nbits         int in 1..16: bits per sub-code (code_size = ceil(M * nbits / 8) bytes)
        d_c           int in 1..D: routing dims (default D)
        d_s           int in 1..D: encoding dims (default D)
        opq           bool: learn a d_s x d_s rotation first
        by_residual   bool: encode y - s_l (faiss's default) or y itself
        metric        str, "l2" or "ip"
        normalize     bool: Matryoshka re-normalised prefixes
        niter         int: coarse k-means iterations
        seed          int: coarse k-means, PQ training sample, PQ and OPQ k-means
        allow_small   bool: no `SmallTrainingSetWarning` for PQ / OPQ below 39 * ksub points (they
                      train either way; the coarse k-means still warns below 39 * nlist)
        opq_niter     int: OPQ iterations (faiss 50)
        precomputed   bool: faiss's precomputed tables for L2 by_residual (False: faiss's -1)

    Attributes
        centroids             (nlist, d_c) float32, or None before training (a copy)
        scoring_centroids     (nlist, d_s) float32 s_l, rotated when opq=True (a copy)
        pq                    ProductQuantizer over d_s
        opq                   OPQ or None
        ntotal                int: stored vectors
        code_size             int: bytes per code
        is_trained            bool
        last_search_flops     float: FLOPs per query of the last search
        last_search_lookups   float: table lookups per query of the last search (M per code)
    `set_quantizers` / `set_lists` install parameters and lists without training (faiss, files).
    """

    def __init__(self, d, nlist, M, nbits=8, d_c=None, d_s=None, opq=False, by_residual=True,
                 metric="l2", normalize=True, niter=10, seed=1234, allow_small=False, opq_niter=50,
                 precomputed=True):
        self.d = as_int(d, "d", 1)
        self.nlist = as_nlist(nlist)
        self.d_c = check_prefix_dim(d_c, self.d, "d_c")
        self.d_s = check_prefix_dim(d_s, self.d, "d_s")
        self.use_opq = as_bool(opq, "opq")
        self.by_residual = as_bool(by_residual, "by_residual")
        self.metric = check_metric(metric)
        self.normalize = as_bool(normalize, "normalize")
        self.niter = as_int(niter, "niter", 1)
        self.allow_small = as_bool(allow_small, "allow_small")
        self.opq_niter = as_int(opq_niter, "opq_niter", 1)
        self.precomputed = as_bool(precomputed, "precomputed")
        self.pq = ProductQuantizer(self.d_s, M, nbits, seed=seed, allow_small=self.allow_small)
        self.M, self.nbits, self.seed = self.pq.M, self.pq.nbits, self.pq.seed
        self.opq = None
        self._centroids = self._scoring = self._term2 = None
        self._route_scores = False
        self.last_search_flops = self.last_search_lookups = 0.0
        self.reset()

    # ----------------------------------------------------------------------- state

    def reset(self):
        """Remove all vectors; centroids, rotation and codebooks are kept."""
        self._set_lists(np.empty((0, self.code_size), np.uint8), np.empty(0, np.int64),
                        np.zeros(self.nlist + 1, np.int64))

    def _set_lists(self, codes, ids, offsets):
        self._codes, self._ids, self._offsets = codes, ids, offsets
        self._sub = self.pq.unpack(codes)

    @property
    def code_size(self):
        return self.pq.code_size

    @property
    def scoring_centroids(self):
        return None if self._scoring is None else self._scoring.copy()

    def list_codes(self, l):
        """PQ codes stored in list l, (size, code_size) uint8 (faiss ``get_invlist`` layout)."""
        return self._codes[self._rows(l)].copy()

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"IVFPQIndex.{verb} called before training; call train(x) first")

    # ----------------------------------------------------------------------- transforms

    def _route(self, x, nprobe, plan=None):
        """(distances, list numbers), both (n, nprobe), of the nprobe nearest centroids of
        z_{d_c}(x); plan: the routing plan of the whole batch when x is a block of it."""
        return search_centroids(prefix(x, self.d_c, self.normalize), self._centroids, nprobe,
                                self.metric, plan)

    def _encoded_space(self, x):
        """y = R z_{d_s}(x), (n, d_s) float32."""
        z = prefix(x, self.d_s, self.normalize)
        return z if self.opq is None else self.opq.apply(z)

    # ----------------------------------------------------------------------- build

    def train(self, x, client=None):
        """Learn centroids, d_s-centroids, rotation (opq) and codebooks from x (n, D), n >= nlist.
        The index is only modified once every step has succeeded. client: a
        ``distributed.Client`` for the coarse k-means (`IVFIndex.train`); the rest runs here."""
        x = as_float32_matrix(x, "x", d=self.d)
        refuse_train_after_add("IVFPQIndex", self.ntotal)
        coarse = IVFIndex(self.d, self.nlist, d_c=self.d_c, metric=self.metric,
                          normalize=self.normalize, niter=self.niter, seed=self.seed)
        coarse.train(x, client=client)  # checks n >= nlist
        centroids = coarse.centroids

        def route(rows):
            return search_centroids(prefix(rows, self.d_c, self.normalize), centroids, 1, self.metric)[1][:, 0]

        n = x.shape[0]
        max_train = self.pq.max_points_per_centroid * self.pq.ksub  # faiss train_encoder_num_vectors
        sample = rand_perm(n, self.seed)[:max_train] if n > max_train else None
        x_pq = x if sample is None else x[sample]
        lists_pq = route(x_pq)
        z_s = prefix(x, self.d_s, self.normalize)
        opq = None
        if self.use_opq:
            opq = OPQ(self.d_s, self.M, niter=self.opq_niter, seed=self.seed,
                      allow_small=self.allow_small).train(z_s)
        if self.d_s == self.d_c:
            means = centroids
        else:
            means = list_means(z_s, lists_pq if sample is None else route(x), self.nlist)
        scoring = np.ascontiguousarray(means if opq is None else opq.apply(means))
        y_pq = z_s if sample is None else z_s[sample]
        y_pq = y_pq if opq is None else opq.apply(y_pq)
        pq = ProductQuantizer(self.d_s, self.M, self.nbits, seed=self.seed, allow_small=self.allow_small)
        pq.train(y_pq - scoring[lists_pq] if self.by_residual else y_pq)
        self._install(pq, opq, centroids, scoring)

    def _install(self, pq, opq, centroids, scoring):
        self.pq, self.opq, self._centroids, self._scoring = pq, opq, centroids, scoring
        self._term2 = None  # precomputed table of the old parameters
        # faiss's term 1 is the coarse search distance; ours equals it when routing and scoring
        # happen in the same space against the same centroids
        self._route_scores = opq is None and np.array_equal(centroids, scoring)

    def add(self, x, client=None):
        """Route, encode and store the rows of x (n, D); ids continue from ntotal.
        Repacks the CSR arrays: O(ntotal) per call, so add in batches. client: a
        ``distributed.Client``: x may then also be a vector file path or a dask array; blocks
        are routed and encoded on the workers and merged in input order (same lists and codes)."""
        self._require_trained("add")
        if client is None:
            x = as_float32_matrix(x, "x", d=self.d)
            if x.shape[0] == 0:
                return
            lists, codes = self._encode_rows(x)
        else:
            x, n = as_rows(x, self.d, client)
            plan, align = routing_plan(n, self.d_c, self.nlist, 1)
            lists, codes = map_concat(client, self._for_workers(), "_encode_rows", x, self.d,
                                      math.lcm(align, self.pq.encode_alignment), plan,
                                      empty=(np.empty(0, np.int64), None))
        if lists.shape[0] == 0:
            return
        new_ids = np.arange(self.ntotal, self.ntotal + lists.shape[0], dtype=np.int64)
        (codes, ids), offsets = append_to_lists(self._offsets, (self._codes, self._ids),
                                                lists, (codes, new_ids))
        self._set_lists(codes, ids, offsets)

    def _encode_rows(self, x, plan=None):
        """(lists (n,) int64, codes (n, code_size) uint8) of validated rows x; plan: the
        routing plan of the whole batch when x is a block of it (`distributed`)."""
        lists = self._route(x, 1, plan)[1][:, 0]
        y = self._encoded_space(x)
        return lists, self.pq.encode(y - self._scoring[lists] if self.by_residual else y)

    def _for_workers(self, with_lists=False):
        """The index to broadcast to Dask workers: a copy without lists for add, or self with
        its precomputed table built (once, here). OPQ is refused: its rotation is one GEMM over
        the whole batch, whose bits depend on how the batch is cut."""
        if self.opq is not None:
            raise ValueError("client= with opq=True is not supported for add/search: the OPQ "
                             "rotation is one GEMM over the batch, whose last bits depend on how "
                             "the batch is cut; run it in-process (client=None)")
        if with_lists:
            if self._uses_precomputed():
                self._precomputed_table()
            return self
        index = copy.copy(self)
        index.reset()
        return index

    # ----------------------------------------------------------------------- search

    def _uses_precomputed(self):
        table_bytes = 4 * self.nlist * self.pq.M * self.pq.ksub
        return (self.metric == "l2" and self.by_residual and self.precomputed
                and table_bytes <= PRECOMPUTED_TABLE_MAX_BYTES)

    def _precomputed_table(self):
        """`indices.ivfpq_kernels.precomputed_table` of our codebooks and scoring centroids, built once."""
        if self._term2 is None:
            self._term2 = precomputed_table(self.pq, self._scoring)
        return self._term2

    def search(self, q, k, nprobe=1, client=None):
        """k best ids of each query row (nq, D) -> (D float32 (nq, k), I int64 (nq, k)).

        nprobe: lists probed per query (>= 1; values above nlist are clamped, as in faiss).
        "l2": squared distances to the reconstructions, ascending; "ip": similarities, descending.
        client: a ``distributed.Client``: shards of the queries are searched on the workers
        against a broadcast copy of the index (same results; not with opq=True).
        """
        q = as_float32_matrix(q, "q", d=self.d)
        k = as_k(k, q.shape[0])
        nprobe = min(as_int(nprobe, "nprobe", 1), self.nlist)
        self._require_trained("search")
        if client is None or q.shape[0] == 0:
            D, I, probes = self._search_rows(q, k, nprobe)
        else:
            plan, align = routing_plan(q.shape[0], self.d_c, self.nlist, nprobe)
            D, I, probes = map_concat(client, self._for_workers(with_lists=True), "_search_rows", q,
                                      self.d, align, k, nprobe, plan)
        self._record_cost(probes)
        return D, I

    def _search_rows(self, q, k, nprobe, plan=None):
        """`search` of validated queries q -> (D, I, probes (nq, nprobe)); plan: the routing
        plan of the whole batch when q is a block of it (`distributed`)."""
        coarse, probes = self._route(q, nprobe, plan)
        y = self._encoded_space(q)
        hd, hi = new_heaps(q.shape[0], k)
        pq = self.pq
        term2 = (self._precomputed_table() if self._uses_precomputed()
                 else np.empty((0, pq.M, pq.ksub), np.float32))
        search_lists(y, coarse, probes, self._scoring, pq.codebooks_t, term2, self._sub, self._ids,
                      self._offsets, self.metric == "l2", self.by_residual, self._route_scores,
                      pq.sum_order, hd, hi)
        return (*finalize(hd, hi, self.metric), probes)

    def _record_cost(self, probes):
        nq, nprobe = probes.shape
        if nq == 0:
            self.last_search_flops = self.last_search_lookups = 0.0
            return
        scanned = int(self.list_sizes()[probes].sum())
        c = cost.ivfpq_flops(self.d_c, self.nlist, self.pq.M, self.pq.ksub, self.pq.dsub, nprobe,
                             scanned, by_residual=self.by_residual and self.metric == "l2")
        self.last_search_flops = float(c["flops"] + (self.d_s * self.d_s if self.use_opq else 0))
        self.last_search_lookups = c["lookups"] / nq

    # ----------------------------------------------------------------------- persistence

    def _params(self):
        return {"d": self.d, "nlist": self.nlist, "M": self.M, "nbits": self.nbits, "d_c": self.d_c,
                "d_s": self.d_s, "opq": self.use_opq, "by_residual": self.by_residual,
                "metric": self.metric, "normalize": self.normalize, "niter": self.niter,
                "seed": self.seed, "allow_small": self.allow_small, "opq_niter": self.opq_niter,
                "precomputed": self.precomputed}

    def save(self, path):
        """Write parameters, centroids, rotation, codebooks and lists to a versioned .npz (atomic)."""
        trained = self.is_trained
        pq = self.pq
        save_npz(path, _KIND, _VERSION, self._params(), {
            "centroids": self._centroids if trained else np.empty((0, self.d_c), np.float32),
            "scoring_centroids": self._scoring if trained else np.empty((0, self.d_s), np.float32),
            "codebooks": pq.codebooks if trained else np.empty((0, pq.ksub, pq.dsub), np.float32),
            "A": self.opq.A if self.opq is not None else np.empty((0, self.d_s), np.float32),
            **self.lists_state()})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt, tampered or foreign file raises ValueError."""
        params, a = load_npz(path, _KIND, _VERSION, {
            "centroids": (np.float32, 2), "scoring_centroids": (np.float32, 2),
            "codebooks": (np.float32, 3), "A": (np.float32, 2), **cls.lists_schema(np.uint8)})
        check_saved_nlist(path, params, a["offsets"])
        try:
            index = cls(**params)
            if a["centroids"].shape[0]:
                index.set_quantizers(a["centroids"], a["scoring_centroids"], a["codebooks"],
                                     a["A"] if a["A"].size else None)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid IVFPQIndex contents ({exc})") from exc
        index.restore_lists(path, a, index.code_size, np.uint8)
        return index

    # ----------------------------------------------------------------------- hooks (faiss bridge, files)

    def set_quantizers(self, centroids, scoring_centroids, codebooks, A=None):
        """Install trained parameters instead of training (e.g. read back from faiss): centroids
        c_l (nlist, d_c); scoring_centroids s_l (nlist, d_s), in the rotated space when opq=True;
        codebooks (M, ksub, dsub); A (d_s, d_s) orthonormal, given iff opq=True. Returns self."""
        refuse_train_after_add("IVFPQIndex", self.ntotal)
        c = as_float32_matrix(centroids, "centroids", d=self.d_c)
        s = as_float32_matrix(scoring_centroids, "scoring_centroids", d=self.d_s)
        if c.shape[0] != self.nlist or s.shape[0] != self.nlist:
            raise ValueError(f"centroids {c.shape} and scoring_centroids {s.shape} need nlist="
                             f"{self.nlist} rows")
        pq = ProductQuantizer(self.d_s, self.M, self.nbits, seed=self.seed, allow_small=self.allow_small)
        pq.set_codebooks(codebooks)
        if self.use_opq != (A is not None):
            raise ValueError(f"opq={self.use_opq}: a rotation A must be given iff opq=True, got "
                             f"{'none' if A is None else 'one'}")
        opq = None
        if A is not None:
            A = as_float32_matrix(A, "A", d=self.d_s)
            err = float(np.abs(A.astype(np.float64) @ A.T.astype(np.float64) - np.eye(self.d_s)).max())
            if A.shape[0] != self.d_s or err > _ORTHO_TOL:
                raise ValueError(f"rotation A of shape {A.shape} is not an orthonormal "
                                 f"{self.d_s} x {self.d_s} matrix (max |A A^T - I| = {err:.3g})")
            opq = OPQ(self.d_s, self.M, niter=self.opq_niter, seed=self.seed, allow_small=self.allow_small)
            opq.A = A.copy()
        self._install(pq, opq, c.copy(), s.copy())
        return self

    def set_lists(self, codes, ids, offsets):
        """Replace the inverted lists (e.g. read back from faiss): codes (N, code_size) uint8 in
        list order, ids (N,) a permutation of 0..N-1, offsets (nlist + 1,) int64 with list l at
        rows offsets[l]:offsets[l+1]. Returns self."""
        self._require_trained("set_lists")
        codes, ids, offsets = check_lists(codes, ids, offsets, self.nlist, self.code_size, np.uint8)
        self._set_lists(codes, ids, offsets)
        return self

    def __repr__(self):
        return (f"IVFPQIndex(d={self.d}, nlist={self.nlist}, M={self.M}, nbits={self.nbits}, "
                f"d_c={self.d_c}, d_s={self.d_s}, opq={self.use_opq}, metric={self.metric!r}, "
                f"ntotal={self.ntotal})")
