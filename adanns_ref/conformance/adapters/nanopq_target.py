"""nanopq (pip install nanopq) as a target: PQ and OPQ codes, ADC distances, ADC search.

Expected: codes identical given its own codebooks (encoding is nearest codeword per
sub-vector, ties to the first); ADC distances equal to rounding (its table sums in float32 in
another order); search against our PQ trained with faiss's rules only in recall (nanopq
trains with its own k-means: scipy-free Lloyd with another initialisation, so other
codebooks).
"""
import numpy as np

from ..target import Target


class NanopqPQ(Target):
    name = "nanopq PQ"
    library = "nanopq"
    imports = "import nanopq\n"
    opq = False
    claims = {"pq codes M=8 nbits=8": "identical", "pq adc distances M=8": "ties",
              "pq search M=8 nbits=8": "recall"}

    def pq_train(self, x, M, nbits):
        import nanopq
        self.model = (nanopq.OPQ if self.opq else nanopq.PQ)(M=M, Ks=2 ** nbits, verbose=False)
        self.model.fit(x, seed=123)

    def pq_encode(self, x):
        return self.model.encode(x)

    def pq_codebooks(self):
        return (self.model.pq if self.opq else self.model).codewords

    def pq_adc(self, q, codes):
        dt = self.model.dtable
        return np.stack([dt(row).adist(codes) for row in q])

    def snippet(self, method, **p):
        cls = "OPQ" if self.opq else "PQ"
        return {
            "pq_train": f"model = nanopq.{cls}(M={p.get('M')}, Ks={2 ** p.get('nbits', 0)}, verbose=False)\n"
                        f"model.fit({p.get('x')}, seed=123)\n",
            "pq_encode": f"codes = model.encode({p.get('x')})\n",
            "pq_codebooks": f"codebooks = model{'.pq' if self.opq else ''}.codewords\n",
            "pq_rotation": "R = model.R\n",
        }.get(method)


class NanopqOPQ(NanopqPQ):
    name = "nanopq OPQ"
    opq = True

    def pq_rotation(self):
        return self.model.R
