"""core.topk: the heap's (distance, id) order and faiss's output conventions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adanns_ref.search import exact
from adanns_ref.core import topk

FLT_MAX = np.float32(3.4028235e38)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 12),
       st.lists(st.tuples(st.integers(0, 6), st.integers(0, 40)), max_size=60, unique_by=lambda t: t[1]))
def test_heap_keeps_k_smallest_keys_in_order(k, items):
    """Whatever the push order (ids not monotonic, many equal distances), the sorted heap is the
    k lexicographically smallest (distance, id) pairs, then empty slots."""
    hd = np.empty(k, np.float32)
    hi = np.empty(k, np.int64)
    topk.heap_init(hd, hi)
    for dist, i in items:
        topk.heap_push(hd, hi, np.float32(dist), i)
    topk.heap_sort(hd, hi)
    expected = sorted((float(dist), i) for dist, i in items)[:k]
    got = [(float(a), int(b)) for a, b in zip(hd, hi) if b >= 0]
    assert got == expected
    assert (hi[len(expected):] == -1).all() and np.isinf(hd[len(expected):]).all()


def test_heap_push_rejects_worse_and_equal_key_with_larger_id():
    hd = np.array([5.0, 1.0], np.float32)  # a valid max-heap: root (5, 7) is the worst kept
    hi = np.array([7, 3], np.int64)
    assert not topk.heap_push(hd, hi, np.float32(6.0), 0)
    assert not topk.heap_push(hd, hi, np.float32(5.0), 8)
    assert topk.heap_push(hd, hi, np.float32(5.0), 2)  # same distance, smaller id wins
    topk.heap_sort(hd, hi)
    assert hi.tolist() == [3, 2]


def test_finalize_flips_ip_sign_and_pads():
    D = np.array([[-3.0, np.inf]], np.float32)
    I = np.array([[4, -1]], np.int64)
    topk.finalize(D, I, "ip")
    assert D.tolist() == [[3.0, -FLT_MAX]]
    D = np.array([[1.5, np.inf]], np.float32)
    topk.finalize(D, I, "l2")
    assert D.tolist() == [[1.5, FLT_MAX]]
