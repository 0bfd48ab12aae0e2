"""The oracle as a target: adanns_ref itself, which must reach every check identically."""
import numpy as np

from ...core.truncate import prefix
from ...indices.binary import BinaryFlatIndex
from ...indices.flat import FlatIndex
from ...indices.hnsw import HNSWIndex
from ...quantizers.binary import binarize
from ...quantizers.pq import ProductQuantizer
from ..target import Target
from ..target_checks import reference_quantize


class ReferenceTarget(Target):
    """adanns_ref's FlatIndex, BinaryFlatIndex, HNSWIndex, ProductQuantizer, prefix, and the
    quantization rule of `target_checks.reference_quantize`."""
    name = "reference (adanns_ref)"
    metrics = ("l2", "ip", "hamming")
    imports = "import adanns_ref as ar\n"
    claims = {"*": "identical"}  # every check

    def build_flat(self, xb, metric):
        self.index = BinaryFlatIndex(xb.shape[1] * 8) if metric == "hamming" else FlatIndex(xb.shape[1], metric)
        self.index.add(xb)

    def build_hnsw(self, xb, M, ef_construction, seed):
        self.index = HNSWIndex(xb.shape[1], M=M, ef_construction=ef_construction, seed=seed)
        self.index.add(xb)

    def search(self, q, k, ef=None):
        if ef is None:
            return self.index.search(q, k)
        return self.index.search(q, k, ef_search=ef)

    def levels(self):
        return self.index.levels

    def pq_train(self, x, M, nbits):
        self.pq = ProductQuantizer(x.shape[1], M, nbits)
        self.pq.train(x)

    def pq_encode(self, x):
        return self.pq.unpack(self.pq.encode(x))

    def pq_codebooks(self):
        return self.pq.codebooks

    def quantize(self, x, precision, calibration):
        return reference_quantize(x, precision, calibration)[0]

    def truncate(self, x, d, normalize):
        return prefix(x, d) if normalize else np.ascontiguousarray(x[:, :d])

    def binarize(self, x):
        return binarize(x)
