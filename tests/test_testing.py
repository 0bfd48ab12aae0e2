import pathlib
import re

import numpy as np
import pytest

from adanns_ref import testing
from adanns_ref.testing import assert_centroids_equal, assert_codes_equal, assert_knn_equal, max_deviation

TESTS = pathlib.Path(__file__).parent


def test_identical_results_pass():
    D = np.array([[0.1, 0.2, 0.3]], np.float32)
    I = np.array([[4, 2, 9]])
    assert_knn_equal(D, I, D.copy(), I.copy())


def test_ties_inside_the_row_compare_as_sets():
    D = np.array([[0.1, 0.5, 0.5, 0.9]], np.float32)
    assert_knn_equal(D, np.array([[1, 2, 3, 4]]), D, np.array([[1, 3, 2, 4]]))
    with pytest.raises(AssertionError, match="ranks 1..2"):
        assert_knn_equal(D, np.array([[1, 2, 3, 4]]), D, np.array([[1, 3, 7, 4]]))


def test_tie_group_cut_at_k_may_differ():
    D = np.array([[0.1, 0.5, 0.5]], np.float32)
    assert_knn_equal(D, np.array([[1, 2, 3]]), D, np.array([[1, 8, 9]]))


def test_distance_mismatch_reported():
    D = np.array([[0.1, 0.2]], np.float32)
    with pytest.raises(AssertionError, match="rank 1"):
        assert_knn_equal(D, [[0, 1]], np.array([[0.1, 0.25]], np.float32), [[0, 1]])


def test_wrong_id_with_unique_distance_fails():
    D = np.array([[0.1, 0.2, 0.3]], np.float32)
    with pytest.raises(AssertionError, match="ranks 0..0"):
        assert_knn_equal(D, [[0, 1, 2]], D, [[5, 1, 2]])


def test_missing_positions_must_match():
    fm = np.finfo(np.float32).max
    D = np.array([[0.1, fm]], np.float32)
    with pytest.raises(AssertionError, match="missing"):
        assert_knn_equal(D, [[0, -1]], np.array([[0.1, 0.2]], np.float32), [[0, 3]])
    assert_knn_equal(D, [[0, -1]], D, [[0, -1]])


def test_shape_mismatch():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_knn_equal(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 3)), np.zeros((1, 3)))


def test_codes_and_centroids():
    c = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert_codes_equal(c, c.copy())
    d = c.copy()
    d[1, 2] += 1
    with pytest.raises(AssertionError, match="vector 1"):
        assert_codes_equal(c, d)
    with pytest.raises(AssertionError, match="dtype"):
        assert_codes_equal(c, c.astype(np.int16))
    x = np.ones((3, 2), np.float32)
    y = x.copy()
    y[2, 0] = np.nextafter(np.float32(1), np.float32(2))
    assert_centroids_equal(x, y, exact=False)
    with pytest.raises(AssertionError, match="centroid 2"):
        assert_centroids_equal(x, y)


def test_max_deviation_ignores_equal_padding():
    fm = np.finfo(np.float32).max
    assert max_deviation([[fm, 1.0]], [[fm, 1.5]]) == 0.5


# ------------------------------------------------------------------ BLAS kernels


@pytest.mark.blas_kernel
def test_blas_kernels_are_threadpoolctls_record_and_the_switch_forces_a_mismatch(monkeypatch):
    from threadpoolctl import threadpool_info
    kernels = testing.blas_kernels(("numpy", "scipy", "no_such_library"))
    assert kernels["no_such_library"] is None
    reported = [{k: info.get(k) for k in ("internal_api", "version", "architecture")}
                for info in threadpool_info() if info["user_api"] == "blas"]
    assert kernels["numpy"] in reported and kernels["scipy"] in reported
    if testing.blas_mismatch_forced():  # CI's second pass
        assert not testing.blas_kernels_agree(("numpy",)) and not testing.blas_kernels_match(kernels)
        monkeypatch.delenv(testing.FORCE_BLAS_MISMATCH)
    assert testing.blas_kernels_agree(("numpy",))  # one library, one BLAS file
    known = kernels["numpy"]["architecture"] is not None  # MKL reports none: never "the same"
    assert testing.blas_kernels_match({"numpy": kernels["numpy"]}) == known
    for value in ("1", "yes"):
        monkeypatch.setenv(testing.FORCE_BLAS_MISMATCH, value)
        assert testing.blas_mismatch_forced()
        assert not testing.blas_kernels_agree(("numpy",)) and not testing.blas_kernels_match(kernels)
    monkeypatch.setenv(testing.FORCE_BLAS_MISMATCH, "0")
    assert not testing.blas_mismatch_forced() and testing.blas_kernels_agree(("numpy",))
    assert not testing.blas_kernels_agree(("numpy", "no_such_library"))  # unknown: no bits demanded


def test_same_kernel_needs_api_architecture_and_version_unless_known_stable():
    haswell = {"internal_api": "openblas", "version": "0.3.15", "architecture": "Haswell"}
    skx = {"internal_api": "openblas", "version": "0.3.15", "architecture": "SkylakeX"}
    assert testing._same_kernel(haswell, {**haswell, "version": "0.3.31"})  # measured stable
    assert testing._same_kernel(skx, dict(skx))
    assert not testing._same_kernel(skx, {**skx, "version": "0.3.30"})  # 0.3.16 changed SkylakeX GEMM
    assert not testing._same_kernel(haswell, skx)
    assert not testing._same_kernel(haswell, {**haswell, "internal_api": "blis"})
    mkl = {"internal_api": "mkl", "version": "2024.0", "architecture": None}
    assert not testing._same_kernel(mkl, dict(mkl)) and not testing._same_kernel(None, haswell)


def test_every_module_that_branches_on_the_blas_kernel_is_marked_for_the_ci_rerun():
    # .ci/run reruns the modules holding the marker with ADANNS_REF_FORCE_BLAS_MISMATCH=1
    branching = {p.name for p in TESTS.rglob("test_*.py")
                 if re.search(r"blas_kernels_(agree|match)\(", p.read_text())}
    assert {"test_opq.py", "test_golden.py"} <= branching
    for name in branching:
        text = next(TESTS.rglob(name)).read_text()
        assert "@pytest.mark.blas_kernel" in text, f"{name} branches on the BLAS kernel but has no marker"
    assert "ADANNS_REF_FORCE_BLAS_MISMATCH=1" in (TESTS.parent / ".ci" / "run").read_text()
