"""The searcher interface of tune's families (`Searcher`) and the families that prune or compress
the scan (issues 27 and 29); the first eight families' searchers are in `measure`.

    panorama     d = D, n_levels | -          exact search at full D with Panorama pruning
                                              (`panorama.PanoramaFlatIndex`, faiss's equal
                                              levels; exported as IndexFlatL2Panorama /
                                              IndexFlatIPPanorama): recall 1 up to ties
    panoivf      nlist, d = D, n_levels |     IVF-Flat at full D with Panorama pruning inside
      nprobe                                  the lists (`PanoramaIVFIndex`, IndexIVFFlatPanorama):
                                              the ids of IVF{nlist},Flat with the same centroids
    fastscan     d, M | -                     4-bit PQ fast-scan on the d-prefix
                                              (`fastscan.PQFastScanIndex`, IndexPQFastScan bbs 32
                                              behind the prefix chain)
    ivffastscan  nlist, d, M | nprobe         IVF + 4-bit PQ fast-scan on the d-prefix, by_residual
                                              False (`IVFPQFastScanIndex`, IndexIVFPQFastScan)
    fsfunnel     d0, M, r | k0                shortlist k0 by 4-bit fast-scan (M sub-quantizers)
                                              at d0, exact re-rank at r (faiss IndexRefine over the
                                              fast-scan prefix index; at r = D the shape of
                                              IndexRefineFlat)

Panorama has no prefix: its pruning already reads the leading dims first, and a Panorama at a
prefix d < D answers exactly as flat search at d (the `flat` family). With --normalize the
stored rows are the unit-norm vectors and the faiss form puts the normalisation chain first.

Costs per query (`cost` conventions: one FLOP per dim of a row scored): Panorama the dims it
actually scanned (`PanoramaStats.rows_per_level` times the level widths, averaged over the
queries), plus D * nlist of routing for panoivf; fast-scan the ADC table M * 16 * dsub * 3
(`cost.adc_flops`; the integer look-ups are not FLOPs, as for `pqindex`), plus d * nlist of
routing for ivffastscan, plus k0 * r of re-rank for fsfunnel.

Fast-scan is searched as faiss does (uint16 accumulation with wrap, `PQFastScanIndex.search`
wrap=True); the grid keeps M <= 64 (< 258), where no sum can wrap. ivffastscan serves metric
"l2" only: faiss 1.15.1's IVF fast-scan heap for IP starts from the caller's uninitialised
output buffer (`fastscan.ivfpqfastscan`), so the served file's IP results are not defined.
"""
import numpy as np

from ..core import cost
from ..core.truncate import prefix
from ..faiss_bridge import import_faiss, to_faiss
from ..faiss_bridge.common import prefix_transforms, pretransform
from ..faiss_bridge.fastscan import fastscan_to_faiss
from ..faiss_bridge.serve import refine_prefix, set_nprobe
from ..fastscan import IVFPQFastScanIndex, PQFastScanIndex
from ..funnel.funnel import rerank
from ..panorama import PanoramaFlatIndex, PanoramaIVFIndex
from ..panorama.flat import DEFAULT_BATCH_SIZE

FASTSCAN_KSUB = 16
FASTSCAN_FULL_TRAIN = 39 * FASTSCAN_KSUB  # fewest training points for 16 centroids, no warning


def training_sample(xb, n, seed):
    """Up to n rows of xb (seeded, in file order, read through a memory map if xb is one)."""
    N = xb.shape[0]
    if N <= n:
        return np.ascontiguousarray(xb, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(N, n, replace=False))
    return np.ascontiguousarray(xb[rows], dtype=np.float32)


class Searcher:
    """Base of the searchers: ``search(q, k, **sweep) -> (D, I, flops)`` on this project's
    indices, and ``faiss_form(sweep)``: the faiss index serving that configuration (one object
    per build, kept and re-parameterised across the sweep; a new one when its shape changes)."""

    def __init__(self, s):
        self.s = s
        self._form_key, self._form = None, None

    def faiss_form(self, sweep):
        key = self.form_key(sweep)
        if self._form is None or key != self._form_key:
            self._form_key, self._form = None, None   # drop the old form before making the new
            self._form_key, self._form = key, self.make_form(sweep)
        self.set_params(self._form, sweep)
        return self._form

    def form_key(self, sweep):
        return None

    def set_params(self, form, sweep):
        pass


class Refined(Searcher):
    """Shared by the funnels: the faiss form is an IndexRefine whose k_factor is k0 / k."""

    def set_params(self, form, sweep):
        form.k_factor = sweep["k0"] / self.s.k


def panorama_flops(stats, bounds, nq):
    """Dims scanned per query by a Panorama search: sum_l rows entering level l * width_l / nq."""
    return float(np.dot(stats.rows_per_level, np.diff(bounds))) / max(1, nq)


def _batch_size(k):
    return max(DEFAULT_BATCH_SIZE, k)   # faiss's flat Panorama needs k <= batch_size


def _full(s, d):
    """(the base as the index stores it (N, D) float32, the faiss chain in front of it)."""
    if d != s.D:
        raise ValueError(f"the Panorama families search at full D={s.D}, got d={d}; a Panorama "
                         f"at a prefix answers as the flat family there")
    return prefix(s.xb, s.D, s.normalize), prefix_transforms(import_faiss(), s.D, s.D, s.normalize)


class PanoramaSearcher(Searcher):
    """Exact search at full D with Panorama pruning over n_levels equal levels."""

    def __init__(self, s, d, n_levels):
        super().__init__(s)
        xb, self.chain = _full(s, d)
        self.index = PanoramaFlatIndex(s.D, n_levels, s.metric, _batch_size(s.k))
        self.index.add(xb)

    def search(self, q, k):
        D, I = self.index.search(prefix(q, self.s.D, self.s.normalize), k)
        return D, I, panorama_flops(self.index.last_search_stats, self.index.bounds, q.shape[0])

    def make_form(self, sweep):
        return pretransform(import_faiss(), self.chain, to_faiss(self.index))


class PanoramaIVFSearcher(Searcher):
    """IVF-Flat at full D (nlist cells) with Panorama pruning in the probed lists."""

    def __init__(self, s, nlist, d, n_levels):
        super().__init__(s)
        xb, self.chain = _full(s, d)
        self.index = PanoramaIVFIndex(s.D, nlist, n_levels, s.metric, seed=s.seed)
        n_train = nlist * self.index.ivf.max_points_per_centroid
        self.index.train(training_sample(xb, n_train, s.seed))
        self.index.add(xb)

    def search(self, q, k, nprobe):
        D, I = self.index.search(prefix(q, self.s.D, self.s.normalize), k, nprobe=nprobe)
        flops = panorama_flops(self.index.last_search_stats, self.index.bounds, q.shape[0])
        return D, I, flops + cost.exact_flops(self.s.D, self.index.nlist)

    def make_form(self, sweep):
        return pretransform(import_faiss(), self.chain, to_faiss(self.index))

    def set_params(self, form, sweep):
        set_nprobe(form, sweep["nprobe"])


def fastscan_table_flops(d, M):
    """FLOPs of one query's fast-scan table on the d-prefix with M sub-quantizers."""
    return cost.adc_flops(M, FASTSCAN_KSUB, d // M, 0)["table_flops"]


def _fastscan(s, d, M):
    """PQFastScanIndex on the d-prefixes of the base, trained on a seeded sample."""
    index = PQFastScanIndex(d, M, s.metric, seed=1234 + s.seed,
                            allow_small=s.N < FASTSCAN_FULL_TRAIN)
    index.train(prefix(training_sample(s.xb, 65536, s.seed), d, s.normalize))
    index.add(prefix(s.xb, d, s.normalize))
    return index


def _fastscan_form(s, index, d):
    faiss = import_faiss()
    return pretransform(faiss, prefix_transforms(faiss, s.D, d, s.normalize),
                        fastscan_to_faiss(index))


class FastScanSearcher(Searcher):
    """4-bit PQ fast-scan (M sub-quantizers) on the d-prefix."""

    def __init__(self, s, d, M):
        super().__init__(s)
        self.d, self.M = d, M
        self.index = _fastscan(s, d, M)

    def search(self, q, k):
        D, I = self.index.search(prefix(q, self.d, self.s.normalize), k)
        return D, I, fastscan_table_flops(self.d, self.M)

    def make_form(self, sweep):
        return _fastscan_form(self.s, self.index, self.d)


class IVFFastScanSearcher(Searcher):
    """IVF (nlist cells routed at the d-prefix) + 4-bit PQ fast-scan of the d-prefix."""

    def __init__(self, s, nlist, d, M):
        super().__init__(s)
        if s.metric != "l2":
            raise ValueError("the ivffastscan family serves metric 'l2' only (faiss's IVF "
                             "fast-scan IP heap is not initialised); drop it from the families")
        self.d, self.M, self.nlist = d, M, nlist
        self.index = IVFPQFastScanIndex(d, nlist, M, s.metric, seed=1234 + s.seed,
                                        allow_small=s.N < FASTSCAN_FULL_TRAIN)
        self.index.train(prefix(training_sample(s.xb, max(256 * nlist, 4096), s.seed), d,
                                s.normalize))
        self.index.add(prefix(s.xb, d, s.normalize))

    def search(self, q, k, nprobe):
        D, I = self.index.search(prefix(q, self.d, self.s.normalize), k, nprobe=nprobe)
        return D, I, fastscan_table_flops(self.d, self.M) + cost.exact_flops(self.d, self.nlist)

    def make_form(self, sweep):
        return _fastscan_form(self.s, self.index, self.d)

    def set_params(self, form, sweep):
        set_nprobe(form, sweep["nprobe"])


class FastScanFunnelSearcher(Refined):
    """Shortlist k0 by 4-bit fast-scan at d0, re-rank exactly at r (IndexRefine over it)."""

    def __init__(self, s, d0, M, r):
        super().__init__(s)
        self.d0, self.M, self.r = d0, M, r
        self.index = _fastscan(s, d0, M)

    def search(self, q, k, k0):
        _, I = self.index.search(prefix(q, self.d0, self.s.normalize), k0)
        D, I = rerank(I, self.s.xb, q, self.r, k, self.s.metric, self.s.normalize)
        return D, I, fastscan_table_flops(self.d0, self.M) + k0 * self.r

    def make_form(self, sweep):
        return refine_prefix(_fastscan_form(self.s, self.index, self.d0), self.s.xb, sweep["k0"],
                             self.r, self.s.k, self.s.metric, self.s.normalize)


BUILDERS = {"panorama": PanoramaSearcher, "panoivf": PanoramaIVFSearcher,
            "fastscan": FastScanSearcher, "ivffastscan": IVFFastScanSearcher,
            "fsfunnel": FastScanFunnelSearcher}
MONOTONE = {"panoivf": "nprobe", "ivffastscan": "nprobe", "fsfunnel": "k0"}
