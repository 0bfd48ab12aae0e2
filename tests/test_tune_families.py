"""tune's Panorama and fast-scan families (`adanns_ref/tune/families.py`, issues 27 and 29): each
is exported as one faiss file that `faiss.read_index` serves with the recall tune reports, the
grid holds one configuration each in --quick, and the eight older families are untouched."""
import numpy as np
import pytest

from adanns_ref.evaluation.metrics import knn_recall
from adanns_ref.testing import assert_knn_equal
from adanns_ref.tune import data, export_faiss, grid, measure
from adanns_ref.tune.run import tune

faiss = pytest.importorskip("faiss")

N, D, NQ, K = 600, 16, 40, 10
NEW = ("panorama", "panoivf", "fastscan", "ivffastscan", "fsfunnel")
OLD = ("flat", "funnel", "ivf", "pq", "ivfpq", "sq", "sqfunnel", "hnsw")


def matryoshka_like(n, seed):
    scales = (1.0 / np.sqrt(np.arange(1, D + 1))).astype(np.float32)
    return (np.random.default_rng(seed).standard_normal((n, D)) * scales + 0.2).astype(np.float32)


XB, XQ = matryoshka_like(N, 1), matryoshka_like(NQ, 2)


def _run(tmp_path, metric):
    """tune --quick over the new families (ip: tune drops ivffastscan itself)."""
    return tune(XB, XQ, str(tmp_path / metric), k=K, metric=metric, dims=[4, 8, 16], quick=True,
                progress=None, repeats=1, timing_queries=20, families=NEW)


def _inner(index):
    """The faiss index under the prefix chain (and the IndexRefine, if any)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_every_new_family_exports_a_file_with_the_reported_recall(tmp_path, metric):
    """For every row of every new family (coarse and refined): the exported file, read back by
    faiss, recalls on the validation and test queries exactly what tune reports, against the
    same ground truth; and it answers as our index does (ids tie-aware, distances ~1e-5)."""
    result = _run(tmp_path, metric)
    rows = result["rows"]
    expected = set(NEW) - ({"ivffastscan"} if metric == "ip" else set())  # cosine: l2 on unit
    assert {r["family"] for r in rows} == expected
    _, search_metric, normalize = data.resolve_metric(metric, False, None)
    gt = data.exact_topk(XB, XQ, K, search_metric, normalize)
    setting = measure.Setting(XB, search_metric, normalize, K, 0, True)
    val, test = np.array(result["split"]["val"]), np.array(result["split"]["test"])
    for row in rows:
        path = str(tmp_path / "x.faiss")
        export_faiss(setting, row, path)
        D_f, I_f = faiss.read_index(path).search(XQ, K)
        assert knn_recall(gt[test], I_f[test], K, K) == row["recall_test"], row["config"]
        assert knn_recall(gt[val], I_f[val], K, K) == row["recall_val"], row["config"]
        D_o, I_o, _ = measure.export_searcher(setting, row).search(XQ, K, **row["sweep"])
        assert_knn_equal(D_o, I_o, D_f, I_f, rtol=1e-4, atol=1e-5)
        if row["family"] == "panorama":   # exact: the ids of exact search at full D
            assert row["recall_test"] == 1.0 and row["recall_val"] == 1.0


def test_exported_files_are_the_faiss_types_with_the_tuned_parameters(tmp_path):
    setting = measure.Setting(XB, "l2", False, K, 0, True)
    cases = [("panorama", {"d": D, "n_levels": 8}, {}, faiss.IndexFlatL2Panorama),
             ("panoivf", {"nlist": 8, "d": D, "n_levels": 4}, {"nprobe": 3},
              faiss.IndexIVFFlatPanorama),
             ("fastscan", {"d": 8, "M": 4}, {}, faiss.IndexPQFastScan),
             ("ivffastscan", {"nlist": 8, "d": 16, "M": 8}, {"nprobe": 3},
              faiss.IndexIVFPQFastScan),
             ("fsfunnel", {"d0": 8, "M": 4, "r": 16}, {"k0": 50}, faiss.IndexPQFastScan)]
    for family, build, sweep, kind in cases:
        path = str(tmp_path / f"{family}.faiss")
        export_faiss(setting, {"family": family, "build": build, "sweep": sweep}, path)
        loaded = faiss.read_index(path)
        inner = _inner(loaded)
        assert isinstance(inner, kind), family
        params = {**build, **sweep}
        if family.startswith("pano"):
            assert inner.n_levels == build["n_levels"] and inner.d == D
            assert grid.bytes_per_vector(family, params) == \
                4 * D + 4 * (build["n_levels"] + 1) + (8 if family == "panoivf" else 0)
        else:
            assert inner.M == build["M"] and inner.bbs == 32 and inner.pq.nbits == 4
            assert grid.bytes_per_vector(family, params) == \
                inner.code_size + {"fastscan": 0, "ivffastscan": 8, "fsfunnel": 4 * 16}[family]
        if "nprobe" in sweep:
            assert inner.nprobe == sweep["nprobe"]
        if family == "ivffastscan":
            assert not inner.by_residual
        if family == "fsfunnel":
            refine = faiss.downcast_index(loaded)
            assert isinstance(refine, faiss.IndexRefine) and refine.k_factor == 5.0
            assert faiss.downcast_index(refine.refine_index).d == 16


def test_quick_holds_one_configuration_per_new_family_and_the_full_grid_more():
    quick = [b for b in grid.builds(N, D, K, [4, 8, 16], quick=True) if b["family"] in NEW]
    assert sorted(b["family"] for b in quick) == sorted(NEW)
    assert all(len(b["sweep"]) == 1 for b in quick)
    full = [b for b in grid.builds(N, D, K, [4, 8, 16]) if b["family"] in NEW]
    count = {f: sum(len(b["sweep"]) for b in full if b["family"] == f) for f in NEW}
    assert count == {"panorama": 3, "panoivf": 2 * 5, "fastscan": 3, "ivffastscan": 3 * 5,
                     "fsfunnel": 3 * 5}
    levels = {b["build"]["n_levels"] for b in full if b["family"] == "panorama"}
    assert levels == {4, 8, 16}   # 32 > D; each one faiss keeps untruncated
    assert grid.panorama_levels(12, False) == [4]   # 8 levels of 12 dims truncate to 6 in faiss
    assert grid.panorama_levels(3, True) == [1]


def test_older_families_keep_their_grid():
    """The new families are appended: the eight older ones' builds are those of a grid without
    them, in the same order."""
    for quick in (True, False):
        both = grid.builds(5000, 64, K, [8, 16, 32, 64], quick=quick)
        old = grid.builds(5000, 64, K, [8, 16, 32, 64], quick=quick, families=OLD)
        assert [b for b in both if b["family"] in OLD] == old


def test_fastscan_mflops_known_before_building_equal_the_measured(tmp_path):
    result = _run(tmp_path, "l2")
    rows = [r for r in result["rows"] if r["family"] in ("fastscan", "fsfunnel")]
    assert rows
    for r in rows:
        params = {**r["build"], **r["sweep"]}
        assert grid.known_mflops(r["family"], params, N, K) == pytest.approx(r["mflops"])


def test_ivffastscan_searcher_refuses_ip_and_panorama_a_prefix():
    setting = measure.Setting(XB, "ip", False, K, 0, True)
    with pytest.raises(ValueError, match="metric 'l2' only"):
        measure.build(setting, "ivffastscan", {"nlist": 8, "d": 16, "M": 8})
    with pytest.raises(ValueError, match="full D=16"):
        measure.build(setting, "panorama", {"d": 8, "n_levels": 4})


def _measured(row):
    """A row without its timings (which vary run to run)."""
    return {n: v for n, v in row.items() if not (n.startswith(("ms_", "numba_ms")) or
                                                 n in ("build_s", "peak_mb"))}


def test_adding_the_families_changes_no_row_of_the_older_ones(tmp_path):
    """--quick (whose refinement follows the front) with and without the new families: the older
    families' rows, refined ones included, are the same configurations with the same recalls,
    MFLOPs and bytes."""
    both = tune(XB, XQ, str(tmp_path / "a"), k=K, dims=[4, 8, 16], quick=True, progress=None,
                repeats=1, timing_queries=20)
    old = tune(XB, XQ, str(tmp_path / "b"), k=K, dims=[4, 8, 16], quick=True, progress=None,
               repeats=1, timing_queries=20, families=OLD)
    assert {r["family"] for r in both["rows"]} == set(OLD) | set(NEW)
    assert [_measured(r) for r in both["rows"] if r["family"] in OLD] == \
        [_measured(r) for r in old["rows"]]
