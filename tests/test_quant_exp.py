"""The grid rule and byte accounting of `experiments.reproduce.quant` (exp. 8)."""
import numpy as np
import pytest

from adanns_ref.binary import binarize
from adanns_ref.sqindex import SQIndex
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
    assert {d for d, p in capped if p == "int8"} == {8, 16, 32, 64, 128, 256}
    assert {d for d, p in capped if p == "float"} == {8, 16, 32, 64, 128, 256, 2048}
