"""The grid of conformance cases (quick: what pytest runs; full: the CLI default) and the runner."""
from dataclasses import dataclass

from .checks import CHECKS


@dataclass(frozen=True)
class Case:
    """One point of the grid: the component's check function is called with `params`."""
    component: str
    name: str
    params: dict

    @property
    def id(self):
        return f"{self.component}-{self.name}"



def _case(component, name, **params):
    return Case(component, name, params)


# Panorama: odd dims, levels not dividing d (d = 37, 5 levels of 8, 8, 8, 8, 5; d = 29, 4 of
# 8, 8, 8, 5), ties (dup), k above the list sizes (padding), n below the batch size.
PANORAMA_QUICK = [
    Case("panorama_flat", "n700-d29-L4-bs64-dups", dict(n=700, d=29, n_levels=4, k=10, metric="l2",
                                                        batch_size=64, dup=150)),
    Case("panorama_flat", "n40-d13-L5-bs128-k64-ip", dict(n=40, d=13, n_levels=5, k=64, metric="ip",
                                                          batch_size=128)),
    Case("panorama_ivf", "n1500-d21-nl12-L3-k60-dups", dict(n=1500, d=21, nlist=12, n_levels=3,
                                                            metric="l2", nprobes=(1, 4), k=60,
                                                            batch_size=32, dup=200)),
    Case("panorama_refine", "n800-d37-L5-kf8-ip", dict(n=800, d=37, n_levels=5, metric="ip", k=10,
                                                       k_factor=8.0)),
]
PANORAMA_FULL = [
    Case("panorama_flat", "n5000-d37-L5-bs1024", dict(n=5000, d=37, n_levels=5, k=20, metric="l2",
                                                      batch_size=1024)),
    Case("panorama_flat", "n3000-d50-L7-bs100-ip-dups", dict(n=3000, d=50, n_levels=7, k=100,
                                                             metric="ip", batch_size=100, dup=500)),
    Case("panorama_ivf", "n4000-d30-nl32-L6-ip", dict(n=4000, d=30, nlist=32, n_levels=6, metric="ip",
                                                      nprobes=(1, 8, 32), k=300, batch_size=64)),
    Case("panorama_refine", "n3000-d45-L9-kf50-dups", dict(n=3000, d=45, n_levels=9, metric="l2",
                                                           k=20, k_factor=50.0, dup=400)),
]


# RaBitQ (issue 29): nb_bits {1, 2, 4, 8} x qb {0, 4, 8} x centred x L2 / IP x d odd / even,
# with and without HR (flat), ties (dup), k on both sides of faiss's reservoir switch (100: the
# flat index's reservoir threshold gates the refinement; faiss's IVF keeps a heap for any k).
RABITQ_QUICK = [
    Case("rabitq", "n1000-d33-nb1-l2-dups", dict(n=1000, d=33, metric="l2", nb_bits=1, dup=200)),
    Case("rabitq", "n1000-d64-nb4-ip-hr", dict(n=1000, d=64, metric="ip", nb_bits=4, hr=True)),
    Case("ivf_rabitq", "n2000-d33-nl8-nb2-l2", dict(n=2000, d=33, nlist=8, metric="l2", nb_bits=2,
                                                   nprobes=(1, 3))),
]
RABITQ_FULL = [
    Case("rabitq", f"n3000-d{d}-nb{nb}-{m}" + ("-hr" if hr else ""),
         dict(n=3000, d=d, metric=m, nb_bits=nb, hr=hr, ks=(1, 10, 40, 120)))
    for d in (33, 64) for nb in (1, 2, 4, 8) for m in ("l2", "ip") for hr in (False, True)
] + [
    Case("ivf_rabitq", f"n4000-d{d}-nl16-nb{nb}-{m}", dict(n=4000, d=d, nlist=16, metric=m, nb_bits=nb,
                                                         nprobes=(1, 4, 16)))
    for d in (33, 64) for nb in (1, 2, 4, 8) for m in ("l2", "ip")
]



def grid(quick=False):
    """The cases to run: the quick grid (pytest) or the full grid (CLI default)."""
    cases = [
        _case("kmeans", "n600-d7-k12", n=600, d=7, k=12),
        _case("kmeans", "n400-d33-k20-spherical", n=400, d=33, k=20, spherical=True),
        _case("kmeans", "n300-d10-k40-dups", n=300, d=10, k=40, dup=200),
        _case("kmeans", "n5000-d33-k16-gemm", n=5000, d=33, k=16, niter=10, gemm=True),
        _case("flat", "n500-d13-l2-dups", n=500, d=13, nq=30, k=10, metric="l2", dup=100),
        _case("flat", "n500-d13-ip", n=500, d=13, nq=30, k=10, metric="ip"),
        _case("flat", "n50-d7-k64", n=50, d=7, nq=10, k=64, metric="l2"),
        _case("ivf", "n2000-d24-nl16-l2", n=2000, d=24, nlist=16, metric="l2", nprobes=(1, 4, 16), k=10),
        _case("ivf", "n1500-d21-nl10-ip", n=1500, d=21, nlist=10, metric="ip", nprobes=(1, 3), k=10),
        _case("ivf", "n300-d12-nl8-empty-k80", n=300, d=12, nlist=8, metric="l2", nprobes=(1, 2, 8), k=80,
              far_lists=3, dup=60),
        _case("ivf", "n1200-d20-nl12-normalized", n=1200, d=20, nlist=12, metric="l2", nprobes=(2,), k=10,
              normalize=True),
        _case("adanns_ivf", "D24-dc8-ds16", n=1500, D=24, nlist=12, d_c=8, d_s=16, metric="l2", nprobes=(1, 4), k=10),
        _case("adanns_ivf", "D24-dc12-ds6-ip", n=1500, D=24, nlist=12, d_c=12, d_s=6, metric="ip", nprobes=(2,), k=10),
        _case("pq", "d21-M7-nbits8", n=2000, d=21, M=7, nbits=8, niter=10),
        _case("pq", "d20-M4-nbits4", n=1000, d=20, M=4, nbits=4),
        _case("pq", "d36-M2-nbits4-blas", n=1000, d=36, M=2, nbits=4),
        _case("opq", "d16-M4", n=1000, d=16, M=4, niter=4),
        _case("ivfpq", "n2000-d24-nl12-M6-nbits8", n=2000, d=24, nlist=12, M=6, nbits=8, metric="l2",
              nprobes=(1, 4)),
        _case("ivfpq", "n2000-d20-nl8-M5-nbits4-ip", n=2000, d=20, nlist=8, M=5, nbits=4, metric="ip",
              nprobes=(2,)),
        _case("ivfpq", "n2500-d16-nl10-M4-opq", n=2500, d=16, nlist=10, M=4, nbits=8, metric="l2",
              nprobes=(1, 3), opq=True),
        _case("ivfpq", "n2000-D24-dc8-ds24-M4", n=2000, d=24, nlist=10, M=4, nbits=8, metric="l2",
              nprobes=(2,), d_c=8, normalize=True),
        _case("metrics", "n600-d14", n=600, d=14, nq=50, k=10, n_classes=5),
        _case("sq", "n800-d32-8bit-l2", n=800, d=32, qtype="8bit", metric="l2"),
        _case("sq", "n800-d24-4bit-uniform-ip-quantiles", n=800, d=24, qtype="4bit_uniform", metric="ip",
              rangestat="quantiles", rangestat_arg=0.01),
        _case("sq", "n600-d13-fp16-dups", n=600, d=13, qtype="fp16", metric="l2", dup=100),
        _case("binary_flat", "n2000-b64-dups", n=2000, d_bits=64, dup=300, k=20),
        _case("binary_flat", "n500-b8-k100", n=500, d_bits=8, k=100),
        _case("binary_ivf", "n3000-b128-nl16", n=3000, d_bits=128, nlist=16, nprobes=(1, 4, 16)),
        _case("hnsw", "n2000-d16-M8-l2-3adds", n=2000, D=16, M=8, metric="l2", batches=(1, 700),
              searches=((10, 16), (40, 16))),
        _case("hnsw", "n1500-d21-M6-ip-dups", n=1500, D=21, M=6, efc=20, metric="ip", dup=300,
              searches=((10, 16), (20, 8))),
        _case("adanns_hnsw", "D32-dc8-ds32", n=2000, D=32, M=8, metric="l2", d_c=8,
              searches=((10, 32), (10, 8))),
        *PANORAMA_QUICK,
        _case("pq_fastscan", "n1500-d16-M4-l2-dups", n=1500, d=16, M=4, metric="l2", dup=300),
        _case("pq_fastscan", "n1500-d16-M8-ip", n=1500, d=16, M=8, metric="ip"),
        _case("ivfpq_fastscan", "n2000-d32-nl8-M16-l2-dups", n=2000, d=32, nlist=8, M=16, metric="l2",
              nprobes=(1, 3), dup=300),
        _case("ivfpq_fastscan", "n2000-d32-nl8-M16-l2-residual-dups", n=2000, d=32, nlist=8, M=16,
              metric="l2", nprobes=(1, 3), dup=300, by_residual=True),
        _case("ivfpq_fastscan", "n2000-d16-nl6-M8-ip-residual", n=2000, d=16, nlist=6, M=8,
              metric="ip", nprobes=(2, 6), by_residual=True),
        *RABITQ_QUICK,
    ]
    if quick:
        return cases
    return cases + [
        _case("kmeans", "n3000-d5-k100", n=3000, d=5, k=100),
        _case("kmeans", "n4000-d11-k10-subsampled", n=4000, d=11, k=10, max_ppc=64),
        _case("kmeans", "n1000-d9-k16-nredo3", n=1000, d=9, k=16, nredo=3),
        _case("kmeans", "n6000-d48-k64-gemm", n=6000, d=48, k=64, niter=10, gemm=True),
        _case("kmeans", "n6000-d30-k32-gemm-spherical", n=6000, d=30, k=32, niter=10, gemm=True, spherical=True),
        _case("flat", "n5000-d96-blas", n=5000, d=96, nq=2000, k=20, metric="l2"),
        _case("flat", "n3000-d61-ip-blas-dups", n=3000, d=61, nq=2500, k=20, metric="ip", dup=500),
        _case("ivf", "n5000-d17-nl40-l2", n=5000, d=17, nlist=40, metric="l2", nprobes=(1, 5, 40), k=20),
        _case("ivf", "n4000-d30-nl32-ip-dups", n=4000, d=30, nlist=32, metric="ip", nprobes=(1, 8), k=10, dup=400),
        _case("ivf", "n3000-d10-nl20-empty-k300", n=3000, d=10, nlist=20, metric="ip", nprobes=(1, 3), k=300,
              far_lists=6),
        _case("adanns_ivf", "D48-dc16-ds32", n=4000, D=48, nlist=32, d_c=16, d_s=32, metric="l2", nprobes=(1, 4, 32), k=20),
        _case("adanns_ivf", "D40-dc40-ds10", n=3000, D=40, nlist=20, d_c=40, d_s=10, metric="l2", nprobes=(2,), k=10),
        _case("adanns_ivf", "D30-dc6-ds30-raw", n=3000, D=30, nlist=20, d_c=6, d_s=30, metric="ip", nprobes=(3,), k=10,
              normalize=False),
        _case("pq", "d30-M5-nbits8", n=3000, d=30, M=5, nbits=8, niter=10),
        _case("pq", "d64-M4-nbits8-blas", n=3000, d=64, M=4, nbits=8, niter=10),
        _case("pq", "d15-M3-nbits4", n=2000, d=15, M=3, nbits=4),
        _case("pq", "d26-M2-nbits8-dsub13", n=3000, d=26, M=2, nbits=8, niter=10),
        _case("opq", "d24-M6", n=2000, d=24, M=6, niter=3),
        _case("opq", "d12-M3", n=1500, d=12, M=3, niter=6),
        _case("ivfpq", "n4000-d32-nl16-M8-no-residual", n=4000, d=32, nlist=16, M=8, nbits=8, metric="l2",
              nprobes=(1, 4, 16), by_residual=False),
        _case("ivfpq", "n3000-d30-nl12-M10-nbits4-normalized", n=3000, d=30, nlist=12, M=10, nbits=4,
              metric="l2", nprobes=(2, 12), normalize=True),
        _case("ivfpq", "n3000-D30-d18-M6-prefix", n=3000, d=30, nlist=12, M=6, nbits=8, metric="l2",
              nprobes=(3,), d_c=18, d_s=18, normalize=True),
        _case("ivfpq", "n3000-d20-nl10-M4-opq-ip", n=3000, d=20, nlist=10, M=4, nbits=8, metric="ip",
              nprobes=(2,), opq=True),
        _case("ivfpq", "n3000-D32-dc24-ds8-opq", n=3000, d=32, nlist=12, M=2, nbits=8, metric="l2",
              nprobes=(1, 4), d_c=24, d_s=8, opq=True, normalize=True),
        _case("metrics", "n3000-d30", n=3000, d=30, nq=200, k=50, n_classes=20),
        _case("sq", "n3000-d64-8bit-uniform-meanstd-ip", n=3000, d=64, qtype="8bit_uniform", metric="ip",
              rangestat="meanstd", rangestat_arg=2.0),
        _case("sq", "n3000-d40-4bit-minmax-l2", n=3000, d=40, qtype="4bit", metric="l2", rangestat_arg=0.1),
        _case("sq", "n2000-d48-bf16-ip", n=2000, d=48, qtype="bf16", metric="ip"),
        _case("sq", "n1500-d16-4bit-optim-l2", n=1500, d=16, qtype="4bit", metric="l2", rangestat="optim"),
        _case("sq", "n2000-d17-8bit-quantiles-l2-dups", n=2000, d=17, qtype="8bit", metric="l2",
              rangestat="quantiles", rangestat_arg=0.02, dup=300),
        _case("binary_flat", "n20000-b1024", n=20000, d_bits=1024, nq=100, k=50),
        _case("binary_ivf", "n10000-b256-nl64-dups", n=10000, d_bits=256, nlist=64, nprobes=(1, 8), dup=1000),
        _case("hnsw", "n6000-d64-M16-l2", n=6000, D=64, M=16, metric="l2", batches=(2, 3000),
              searches=((10, 16), (10, 64), (100, 64))),
        _case("hnsw", "n5000-d100-M32-ip", n=5000, D=100, M=32, metric="ip", searches=((10, 16), (10, 128))),
        _case("hnsw", "n3000-d8-M4-efc10-dups", n=3000, D=8, M=4, efc=10, metric="l2", dup=1500,
              searches=((10, 16), (30, 4))),
        _case("pq_fastscan", "n3000-d64-M32-l2", n=3000, d=64, M=32, metric="l2", ks=(1, 5, 20, 21, 64)),
        _case("pq_fastscan", "n3000-d48-M16-ip-dups", n=3000, d=48, M=16, metric="ip", dup=600),
        _case("pq_fastscan", "n2000-d30-M15-l2-odd", n=2000, d=30, M=15, metric="l2"),
        _case("ivfpq_fastscan", "n4000-d32-nl16-M8-ip", n=4000, d=32, nlist=16, M=8, metric="ip",
              nprobes=(1, 4, 16)),
        _case("ivfpq_fastscan", "n3000-d64-nl12-M32-l2-dups", n=3000, d=64, nlist=12, M=32, metric="l2",
              nprobes=(2, 12), dup=500),
        _case("ivfpq_fastscan", "n3000-d16-nl10-M4-l2", n=3000, d=16, nlist=10, M=4, metric="l2",
              nprobes=(3,)),
        _case("ivfpq_fastscan", "n4000-d64-nl16-M32-l2-residual", n=4000, d=64, nlist=16, M=32,
              metric="l2", nprobes=(1, 4, 16), by_residual=True),
        _case("ivfpq_fastscan", "n3000-d48-nl12-M16-ip-residual-dups", n=3000, d=48, nlist=12, M=16,
              metric="ip", nprobes=(3, 12), dup=500, by_residual=True),
        _case("ivfpq_fastscan", "n3000-d16-nl8-M4-l2-residual", n=3000, d=16, nlist=8, M=4,
              metric="l2", nprobes=(8,), by_residual=True),
        _case("adanns_hnsw", "D48-dc12-ds48-ip", n=4000, D=48, M=12, metric="ip", d_c=12,
              searches=((10, 16), (5, 64))),
        *PANORAMA_FULL,
        *RABITQ_FULL,
    ]


def run_case(case):
    """All checks of one case -> list of Result."""
    return CHECKS[case.component](case.name, **case.params)


def run(cases):
    results = []
    for case in cases:
        results.extend(run_case(case))
    return results
