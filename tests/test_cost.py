import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from adanns_ref.core import cost

N_IMAGENET = 1_281_167


def test_exact_flops():
    assert cost.exact_flops(2048, N_IMAGENET) == 2048 * N_IMAGENET
    assert cost.exact_flops(16, 0) == 0


def test_adaptive_retrieval_is_128x_cheaper_as_in_the_mrl_paper():
    # MRL: shortlist 200 at 16 dims, re-rank at 2048 -> "128x fewer MFLOPs" than exact at 2048.
    # 128 = 2048 / 16 is the ratio of the shortlisting terms; the re-rank term 200 * 2048 brings
    # the modelled ratio to 125x.
    adaptive = cost.funnel_flops(16, N_IMAGENET, [(2048, 200)])
    assert adaptive == 16 * N_IMAGENET + 2048 * 200
    assert round(cost.exact_flops(2048, N_IMAGENET) / adaptive) == 125
    assert cost.exact_flops(2048, N_IMAGENET) / cost.exact_flops(16, N_IMAGENET) == 128


def test_funnel_flops_sums_stages_and_clamps_shortlists_to_N():
    assert cost.funnel_flops(16, 1000, [(32, 200), (64, 100), (2048, 50)]) == \
        16 * 1000 + 32 * 200 + 64 * 100 + 2048 * 50
    assert cost.funnel_flops(8, 10, [(64, 200)]) == 8 * 10 + 64 * 10
    assert cost.funnel_flops(8, 10, []) == cost.exact_flops(8, 10)


def test_ivf_measured_equals_balanced_for_equal_lists():
    nlist, N, nprobe = 64, 6400, 4
    measured = cost.ivf_flops(16, nlist, 64, [N // nlist] * nprobe)
    assert measured == 16 * nlist + 64 * nprobe * (N // nlist)
    assert cost.ivf_flops_balanced(16, nlist, 64, nprobe, N) == pytest.approx(measured)
    # nprobe above nlist is clamped, as faiss does.
    assert cost.ivf_flops_balanced(16, 8, 64, 100, 800) == 16 * 8 + 8 * 64 * 100


def test_ivf_flops_per_query_rows():
    sizes = np.array([[10, 0, 5], [1, 2, 3]])
    out = cost.ivf_flops(2, 4, 3, sizes)
    np.testing.assert_array_equal(out, [2 * 4 + 3 * 15, 2 * 4 + 3 * 6])
    assert isinstance(cost.ivf_flops(2, 4, 3, [1, 2]), int)


def test_ivf_flops_measured_on_a_faiss_index():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((2000, 16)).astype(np.float32)
    xq = rng.standard_normal((5, 16)).astype(np.float32)
    quantizer = faiss.IndexFlatL2(16)
    index = faiss.IndexIVFFlat(quantizer, 16, 20)
    index.train(xb)
    index.add(xb)
    _, probed = quantizer.search(xq, 3)
    sizes = np.array([[index.invlists.list_size(int(c)) for c in row] for row in probed])
    flops = cost.ivf_flops(16, 20, 16, sizes)
    # d_s * (number of scanned codes) is what faiss reports as ndis in its IVF stats.
    faiss.cvar.indexIVF_stats.reset()
    index.nprobe = 3
    index.search(xq, 1)
    assert int(flops.sum()) == 5 * 16 * 20 + 16 * faiss.cvar.indexIVF_stats.ndis


def test_adc_and_ivfpq_flops():
    adc = cost.adc_flops(M=8, ksub=256, dsub=4, n_scanned=1000)
    assert adc == {"table_flops": 8 * 256 * 4 * 3, "lookups": 8000}
    out = cost.ivfpq_flops(d_c=32, nlist=100, M=8, ksub=256, dsub=4, nprobe=3, n_scanned=1000)
    assert out == {"coarse_flops": 3200, "table_flops": 3 * 8 * 256 * 4 * 3,
                   "flops": 3200 + 3 * 8 * 256 * 4 * 3, "lookups": 8000}
    flat = cost.ivfpq_flops(32, 100, 8, 256, 4, 3, 1000, by_residual=False)
    assert flat["table_flops"] == adc["table_flops"]


@settings(deadline=None, max_examples=30)
@given(d=st.integers(1, 64), M=st.integers(1, 64), nbits=st.integers(1, 16))
def test_bytes_match_faiss_code_size(d, M, nbits):
    faiss = pytest.importorskip("faiss")
    assert cost.bytes_per_vector_flat(d) == faiss.IndexFlatL2(d).code_size
    assert cost.bytes_per_vector_pq(M, nbits) == faiss.ProductQuantizer(M, M, nbits).code_size
    assert cost.bytes_per_vector_pq(M, nbits, ids=True) == cost.bytes_per_vector_pq(M, nbits) + 8


@pytest.mark.parametrize("call, exc, match", [
    (lambda: cost.exact_flops(0, 10), ValueError, "d must be >= 1"),
    (lambda: cost.exact_flops(8, -1), ValueError, "N must be >= 0"),
    (lambda: cost.exact_flops(8.0, 10), TypeError, "d must be an integer"),
    (lambda: cost.exact_flops(True, 10), TypeError, "d must be an integer"),
    (lambda: cost.ivf_flops(8, 0, 8, [1]), ValueError, "nlist must be >= 1"),
    (lambda: cost.ivf_flops(8, 4, 8, [1, -2]), ValueError, "probed_sizes must be >= 0"),
    (lambda: cost.ivf_flops(8, 4, 8, [1.5]), TypeError, "integer list sizes"),
    (lambda: cost.ivf_flops(8, 4, 8, 5), ValueError, "1-D"),
    (lambda: cost.ivf_flops_balanced(8, 4, 8, 0, 100), ValueError, "nprobe must be >= 1"),
    (lambda: cost.funnel_flops(8, 100, [(16,)]), ValueError, r"stages\[0\] must be"),
    (lambda: cost.funnel_flops(8, 100, [(0, 10)]), ValueError, "dim must be >= 1"),
    (lambda: cost.adc_flops(0, 256, 4, 10), ValueError, "M must be >= 1"),
    (lambda: cost.adc_flops(8, 256, 4, -1), ValueError, "n_scanned must be >= 0"),
    (lambda: cost.bytes_per_vector_pq(8, 0), ValueError, "nbits must be >= 1"),
    (lambda: cost.bytes_per_vector_flat(-3), ValueError, "d must be >= 1"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bytes_per_vector_by_precision():
    from adanns_ref.core.cost import bytes_per_vector
    assert [bytes_per_vector(1024, p) for p in ("binary", "int8", "float")] == [128, 1024, 4096]
    assert bytes_per_vector(12, "binary") == 2  # 12 bits still take two whole bytes
    with pytest.raises(ValueError, match="precision"):
        bytes_per_vector(8, "int4")
    with pytest.raises(ValueError, match="d must be >= 1"):
        bytes_per_vector(0, "int8")


def test_bytes_per_vector_hnsw_matches_a_built_graph():
    from adanns_ref.core.cost import bytes_per_vector_hnsw
    from adanns_ref.indices.hnsw.index import HNSWIndex
    index = HNSWIndex(16, M=8, ef_construction=16)
    index.add(np.random.default_rng(0).standard_normal((4000, 16)).astype(np.float32))
    slots = index._offsets[-1] / index.ntotal   # int32 link slots per node in faiss's layout
    expected = bytes_per_vector_hnsw(16, 8) - 4 * 16 - 12
    assert abs(4 * slots - expected) < 0.01 * expected
    assert bytes_per_vector_hnsw(4, 8, 16) == bytes_per_vector_hnsw(4, 8) + 64
    with pytest.raises(ValueError, match="M"):
        bytes_per_vector_hnsw(4, 1)
    with pytest.raises(ValueError, match="d_s"):
        bytes_per_vector_hnsw(4, 8, 0)
