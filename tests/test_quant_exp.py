"""The grid rule and byte accounting of `experiments.reproduce.quant` (exp. 8)."""
import numpy as np
import pytest

from adanns_ref.quantizers.binary import binarize
from adanns_ref.indices.sqindex import SQIndex
from experiments.reproduce.quant import code_bytes, quant_grid

PAPER_NEST = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


@pytest.mark.parametrize("d", [1, 2, 3, 7, 8, 9, 64])
def test_code_bytes_are_the_sizes_the_codes_have(d):
    x = np.random.default_rng(d).standard_normal((5, d)).astype(np.float32)
    assert code_bytes(d, "binary") == binarize(x).shape[1]
    assert code_bytes(d, "int8") == SQIndex(d, "8bit").sq.code_size
    assert code_bytes(d, "4bit") == SQIndex(d, "4bit").sq.code_size
    assert code_bytes(d, "float") == 4 * d


def test_grid_follows_the_nesting_and_caps_only_the_costly_scans():
    full = quant_grid([2, 4, 8], ["binary", "int8", "float"], None)
    assert len(full) == 9 and (2, "int8") in full
    capped = quant_grid(PAPER_NEST, ["binary", "int8", "float"], 256)
    assert {d for d, p in capped if p == "binary"} == set(PAPER_NEST)
    # beyond the cap: every precision at D (the rigid budgets) and the largest prefix of each
    # precision within each budget (int8@D = 2048 B: int8@1024, float@512), so no grid hole
    assert {d for d, p in capped if p == "int8"} == {8, 16, 32, 64, 128, 256, 1024, 2048}
    assert {d for d, p in capped if p == "float"} == {8, 16, 32, 64, 128, 256, 512, 2048}
    from experiments.reproduce.verdicts.grids import quant_holes
    from experiments.reproduce.quant import code_bytes
    rows = [{"method": "MR-prefix", "precision": p, "d": d, "bytes": code_bytes(d, p)} for d, p in capped]
    rows += [dict(r, method=f"MR-{r['precision']}") for r in rows if r["d"] == 2048]
    assert quant_holes(rows, PAPER_NEST, code_bytes) == []
    holed = [r for r in rows if (r["precision"], r["d"]) != ("float", 512)]
    assert quant_holes(holed, PAPER_NEST, code_bytes) == [
        "float@512 (2048 B, the largest float prefix within the 2048 B of int8@D) did not run"]
    one = [r for r in rows if r["method"] != "MR-int8"]
    assert "1 byte budget(s) (binary@D)" in quant_holes(one, PAPER_NEST, code_bytes)[0]


@pytest.mark.parametrize("d", [8, 12, 32])
def test_one_hamming_scan_serves_every_funnel_like_mixed_funnel_search(d):
    """binary_funnels re-ranks prefixes of one long Hamming shortlist; with ties to the smaller
    id that is the funnel `mixed_funnel_search` runs stage by stage (ties are frequent here:
    non-negative data, few bits)."""
    from adanns_ref.quantizers.binary import hamming_knn
    from adanns_ref.funnel.funnel import mixed_funnel_search
    from experiments.reproduce.quant import QUANT_K, binary_funnels

    rng = np.random.default_rng(d)
    db = np.maximum(rng.standard_normal((700, 32)), 0).astype(np.float32)
    q = np.maximum(rng.standard_normal((40, 32)), 0).astype(np.float32)
    I_bin, _, funnels = binary_funnels(db, q, d, 32, [1.5, 4, 10])
    assert np.array_equal(I_bin, hamming_knn(binarize(q, d), binarize(db, d), QUANT_K)[1])
    for o, (I, _, s) in funnels.items():
        assert s == int(np.ceil(o * QUANT_K))
        _, I_ref, _ = mixed_funnel_search(db, q, [(d, "binary", None), (32, "float", QUANT_K)], oversample=o)
        assert np.array_equal(I, I_ref)
