"""RaBitQ over all vectors: faiss 1.15.1 ``IndexRaBitQ`` (flat codes, one centroid).

train(x):  c = the column means of x (float32, summed row after row, then divided by n; faiss
           ``IndexRaBitQ::train``). Training again replaces c (faiss does too) but codes already
           added keep the old one, so we refuse it after add.
add(x):    codes of x against c (`quantizer.RaBitQuantizer`), appended; ids 0 .. ntotal - 1.
search:    per query, every code in id order, scored by the 1-bit estimate (qb = 0: float query;
           qb = 1..8: quantized, ``centered`` or not), then for nb_bits > 1 the two-stage
           refinement (`scan.search_flat`), into faiss's handler: a heap for k < 100, its
           reservoir for k >= 100 (`reservoir`; its threshold gates the refinement); the k
           best as faiss's heaps keep them: L2 ascending,
           ties to the smaller id; IP descending, tied similarities by decreasing id (faiss's
           ``CMin`` heap), and a result enters only if strictly better than the k-th; padding
           -1 / +-FLT_MAX.

faiss's ``qb`` and ``centered`` are index fields (defaults 4 and False); ours are constructor
parameters (qb defaults to 0 as issue #29 asks; ``RaBitQIndex(d, qb=4)`` is faiss's default) and
can be changed per search. The cost per query is O(ntotal d) bit operations, plus O(d) per
refined code at nb_bits > 1.

With ``hr_seed`` set, every vector first goes through `hadamard.HadamardRotation(d, hr_seed)`
(faiss ``index_factory(d, "HR,RaBitQ")`` = ``hr_seed=12345``: an ``IndexPreTransform``), and the
codes live in its p = next power of 2 >= d dimensions; vectors wider than d are rotated on their
first d columns (a Matryoshka prefix).

Shapes: codes (ntotal, code_size) uint8, faiss's bytes (`quantizer` gives the layout);
center (p,) float32 (p = d without rotation).
"""
import numpy as np

from ..core import topk
from ..core.persist import load_npz, save_npz
from ..core.threads import threads_for
from ..core.validate import as_bool, as_float32_matrix, as_int, as_k
from . import kernels, reservoir, scan
from .hadamard import HadamardRotation
from .quantizer import RaBitQuantizer

_KIND, _VERSION = "RaBitQIndex", 1


def search_options(qb, centered):
    """(qb, centered) checked: qb an int in 0..8, centered a bool (only meaningful with qb > 0)."""
    return as_int(qb, "qb", low=0, high=8), as_bool(centered, "centered")


class RaBitQIndex:
    """faiss ``IndexRaBitQ(d, metric, nb_bits)`` with ``qb`` and ``centered`` (module docstring).

    Parameters:
        d: int, vector dimension
        metric: "l2" or "ip"
        nb_bits: int in 1..9, bits per dimension
        qb: int in 0..8, bits of the query quantizer (0: float32 query)
        centered: bool, the zero-centred query quantizer (qb > 0)
        hr_seed: None, or the uint32 seed of a Hadamard pre-rotation (faiss ``HR``: 12345)

    Attributes:
        rotation: HadamardRotation or None
        rabitq: RaBitQuantizer (of dimension rotation.d_out with a rotation)
        center: (p,) float32 or None before train
        codes: (ntotal, code_size) uint8
        ntotal: int
    """

    def __init__(self, d, metric="l2", nb_bits=1, qb=0, centered=False, hr_seed=None):
        self.d = as_int(d, "d", low=1, high=1 << 24)
        self.rotation = None if hr_seed is None else HadamardRotation(self.d, hr_seed)
        self.hr_seed = None if hr_seed is None else self.rotation.seed
        inner = self.d if self.rotation is None else self.rotation.d_out
        self.rabitq = RaBitQuantizer(inner, metric, nb_bits)
        self.metric, self.nb_bits = self.rabitq.metric, self.rabitq.nb_bits
        self.qb, self.centered = search_options(qb, centered)
        self.center = None
        self.codes = np.zeros((0, self.rabitq.code_size), np.uint8)

    @property
    def ntotal(self):
        return self.codes.shape[0]

    @property
    def is_trained(self):
        return self.center is not None

    @property
    def code_size(self):
        return self.rabitq.code_size

    def _require_trained(self, verb):
        if not self.is_trained:
            raise ValueError(f"RaBitQIndex.{verb} called before train(); call train(x) first")

    def _input(self, x, name):
        """x (n, d) float32, rotated when the index has a rotation (which also takes wider rows)."""
        if self.rotation is not None:
            return self.rotation.apply(as_float32_matrix(x, name))
        return as_float32_matrix(x, name, d=self.d)

    def train(self, x):
        """c = mean of x (n >= 1, d) in faiss's order."""
        x = self._input(x, "x")
        if x.shape[0] < 1:
            raise ValueError("x has 0 rows but at least 1 is needed to train")
        if self.ntotal:
            raise ValueError(f"RaBitQIndex.train after add ({self.ntotal} codes use the current "
                             f"centroid); call reset() first")
        self.center = kernels.column_mean(x)
        return self

    def reset(self):
        self.codes = np.zeros((0, self.rabitq.code_size), np.uint8)

    def sa_encode(self, x):
        """Codes (n, code_size) uint8 of x, faiss's bytes."""
        self._require_trained("sa_encode")
        return self.rabitq.encode(self._input(x, "x"), self.center)

    def sa_decode(self, codes):
        """faiss's (IP-preserving) reconstruction (n, p) float32 of codes (in the rotated space)."""
        self._require_trained("sa_decode")
        return self.rabitq.decode(codes, self.center)

    def add(self, x):
        """Encode x (n, d) and append it; ids ntotal .. ntotal + n - 1."""
        self._require_trained("add")
        self.codes = np.concatenate([self.codes, self.sa_encode(x)])

    def search(self, q, k, qb=None, centered=None):
        """k best of q (nq, d) -> (D float32 (nq, k), I int64 (nq, k)); qb / centered override the
        index's for this call (faiss ``RaBitQSearchParameters``)."""
        self._require_trained("search")
        q = self._input(q, "q")
        k = as_k(k, q.shape[0])
        qb, centered = search_options(self.qb if qb is None else qb,
                                      self.centered if centered is None else centered)
        bits, fac, ex, exfac = self.rabitq.split(self.codes)
        hd, hi = topk.new_heaps(q.shape[0], k)
        with threads_for(q.shape[0] * max(self.ntotal, 1) * self.d):
            cap = reservoir.capacity(k) if k >= topk.RESERVOIR_MIN_K else 0  # faiss's handler
            scan.search_flat(q, self.center, bits, fac, ex, exfac, self.metric == "ip", qb,
                             centered, self.rabitq.ex_bits, cap, hd, hi)
            topk.sort_heaps(hd, hi)
        return topk.finalize(hd, scan.heap_ids(hd, hi, self.metric == "ip"), self.metric)

    def _params(self):
        return {"d": self.d, "metric": self.metric, "nb_bits": self.nb_bits, "qb": self.qb,
                "centered": self.centered, "hr_seed": self.hr_seed}

    def save(self, path):
        """Write parameters, centroid and codes to a versioned .npz file (atomic)."""
        center = self.center if self.center is not None else np.zeros(0, np.float32)
        save_npz(path, _KIND, _VERSION, self._params(), {"center": center, "codes": self.codes})

    @classmethod
    def load(cls, path):
        """Read an index written by `save`; a corrupt or foreign file raises ValueError."""
        params, arr = load_npz(path, _KIND, _VERSION, {"center": (np.float32, 1), "codes": (np.uint8, 2)})
        try:
            index = cls(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid RaBitQIndex parameters ({exc})") from exc
        center, codes = arr["center"], arr["codes"]
        trained = center.shape == (index.rabitq.d,)
        if not (trained or center.size == 0) or codes.shape[1] != index.code_size or (
                codes.shape[0] and not trained) or not np.isfinite(center).all():
            raise ValueError(f"{path}: center {center.shape} and codes {codes.shape} do not fit "
                             f"{index!r} (code_size {index.code_size})")
        index.center = np.ascontiguousarray(center) if trained else None
        index.codes = np.ascontiguousarray(codes)
        return index

    def __repr__(self):
        return (f"RaBitQIndex(d={self.d}, metric={self.metric!r}, nb_bits={self.nb_bits}, "
                f"qb={self.qb}, centered={self.centered}, hr_seed={self.hr_seed}, ntotal={self.ntotal})")
