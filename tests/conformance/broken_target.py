"""A deliberately broken target: the oracle with three classic bugs, for tests of the protocol.

- flat search: equal distances ranked larger id first (wrong tie order);
- quantize int8: uint8 - 127 instead of - 128 (off by one);
- binarize: a bit set at x >= 0 instead of x > 0.
It claims "identical" everywhere (as the reference does), so each bug must fail its claim.
"""
import numpy as np

from adanns_ref.conformance.adapters.reference import ReferenceTarget


class BrokenTarget(ReferenceTarget):
    name = "broken"

    def search(self, q, k, ef=None):
        D, I = super().search(q, k, ef)
        D, I = D.copy(), I.copy()
        for row in range(len(D)):  # reverse the ids inside each run of equal distances
            start = 0
            for j in range(1, k + 1):
                if j == k or D[row, j] != D[row, start]:
                    I[row, start:j] = I[row, start:j][::-1]
                    start = j
        return D, I

    def quantize(self, x, precision, calibration):
        codes = super().quantize(x, precision, calibration)
        if precision == "int8":
            return (codes.astype(np.int16) + 1).clip(-128, 127).astype(np.int8)
        return codes

    def binarize(self, x):
        return np.packbits(x >= 0, axis=1)
