"""python -m adanns_ref.tune end to end on tiny Matryoshka-like data (.npy, .fbin, HDF5), the
faiss export of every family, and the errors of bad input."""
import json
import os
import re

import numpy as np
import pytest

from adanns_ref.io import write_fbin, write_hdf5, write_npy
from adanns_ref.evaluation.metrics import knn_recall
from adanns_ref.testing import assert_knn_equal
from adanns_ref.tune import data, export_faiss, measure
from adanns_ref.tune.cli import main
from adanns_ref.tune.run import tune


def _faiss():
    return pytest.importorskip("faiss")

N, D, NQ, K = 600, 16, 40, 10


def matryoshka_like(n, seed):
    """Gaussian rows whose leading dims carry most of the variance (like MRL embeddings)."""
    scales = (1.0 / np.sqrt(np.arange(1, D + 1))).astype(np.float32)
    return (np.random.default_rng(seed).standard_normal((n, D)) * scales).astype(np.float32)


XB, XQ = matryoshka_like(N, 1), matryoshka_like(NQ, 2)
BUDGETS = {"bytes": 72, "mflops": 0.5 * N * D / 1e6, "recall": 0.5}


def _budget_args():
    return ["--budget-bytes", str(BUDGETS["bytes"]), "--budget-mflops", str(BUDGETS["mflops"]),
            "--min-recall", str(BUDGETS["recall"])]


def _stated_recall(md_text):
    """The held-out recall tune.md states for the overall choice."""
    line = next(l for l in md_text.splitlines() if l.startswith("| **overall"))
    return float(line.split("|")[4])


def _check_run(out, export, xb, xq, gt, normalize, capsys):
    for name in ("tune.md", "tune.json", "pareto.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "pareto.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    for phase in ("builds", "refinement", "export"):  # stderr is not a TTY: one line per phase
        assert re.search(rf"^\[tune\] {phase}: .* s$", err, re.M), err
    result = json.load(open(os.path.join(out, "tune.json")))
    md = open(os.path.join(out, "tune.md")).read()
    assert "## Pareto front" in md and "faiss.read_index" in md
    chosen, overall = result["chosen"], result["overall"]
    assert set(chosen) == {"bytes", "mflops", "recall"}
    assert chosen["bytes"]["bytes"] <= BUDGETS["bytes"]
    assert chosen["mflops"]["mflops"] <= BUDGETS["mflops"]
    assert chosen["recall"]["recall_val"] >= BUDGETS["recall"]
    assert overall["bytes"] <= BUDGETS["bytes"] and overall["mflops"] <= BUDGETS["mflops"]
    assert overall["recall_val"] >= BUDGETS["recall"]
    # the file faiss loads answers as our index does, with the recall tune.md states
    setting = measure.Setting(xb, "l2", normalize, K, 0, True)
    D_ours, I_ours, _ = measure.export_searcher(setting, overall).search(xq, K, **overall["sweep"])
    D_f, I_f = _faiss().read_index(export).search(xq, K)
    assert_knn_equal(D_ours, I_ours, D_f, I_f, rtol=1e-4, atol=1e-5)
    test = np.array(result["split"]["test"])
    recall = knn_recall(gt[test], I_f[test], K, K)
    assert recall == pytest.approx(overall["recall_test"])
    assert recall == pytest.approx(_stated_recall(md), abs=5e-4)
    return result


def _run_files(tmp_path, write, ext, dims):
    write(tmp_path / f"base{ext}", XB)
    write(tmp_path / f"queries{ext}", XQ)
    out, export = str(tmp_path / "out"), str(tmp_path / "index.faiss")
    argv = ["--base", str(tmp_path / f"base{ext}"), "--queries", str(tmp_path / f"queries{ext}"),
            "--dims", dims, "--quick", "--out", out, "--export", export] + _budget_args()
    assert main(argv) == 0
    return out, export


def test_npy_end_to_end(tmp_path, capsys):
    _faiss()
    out, export = _run_files(tmp_path, write_npy, ".npy", "4,8,16")
    gt = data.exact_topk(XB, XQ, K, "l2", False)
    result = _check_run(out, export, XB, XQ, gt, False, capsys)
    assert {r["family"] for r in result["rows"]} == {"flat", "funnel", "ivf", "pq", "ivfpq", "sq",
                                                     "sqfunnel", "hnsw", "panorama", "panoivf",
                                                     "fastscan", "ivffastscan", "fsfunnel"}
    # the ground truth is cached: a second load returns it without recomputing
    assert np.array_equal(data.ground_truth(XB, XQ, K, "l2", False, out), gt)


def test_fbin_end_to_end(tmp_path, capsys):
    _faiss()
    out, export = _run_files(tmp_path, write_fbin, ".fbin", "8,16")
    _check_run(out, export, XB, XQ, data.exact_topk(XB, XQ, K, "l2", False), False, capsys)


def test_hdf5_end_to_end_uses_the_files_neighbors(tmp_path, capsys):
    _faiss()
    pytest.importorskip("h5py")
    gt = data.exact_topk(XB, XQ, K, "l2", True)
    # the file's ground truth is used as it is: one test query gets the 10 farthest points as its
    # "neighbours", which moves the stated test recall only if the file is read, not recomputed
    neighbors = gt.copy()
    t0 = data.split_queries(NQ, 0)["test"][0]
    neighbors[t0] = data.exact_topk(XB, -XQ[t0:t0 + 1], K, "ip", True)[0]
    write_hdf5(tmp_path / "data.hdf5", XB, XQ, neighbors, np.zeros(gt.shape, np.float32),
               distance="angular")
    out, export = str(tmp_path / "out"), str(tmp_path / "index.faiss")
    argv = ["--hdf5", str(tmp_path / "data.hdf5"), "--dims", "8,16", "--quick", "--out", out,
            "--export", export] + _budget_args()
    assert main(argv) == 0
    _check_run(out, export, XB, XQ, neighbors, True, capsys)
    assert not os.path.exists(os.path.join(out, "groundtruth.npz"))


def test_every_family_exports_a_faiss_file_equal_to_ours(tmp_path):
    _faiss()
    result = tune(XB, XQ, str(tmp_path), k=K, dims=[4, 8, 16], quick=True, progress=None,
                  repeats=1)
    setting = measure.Setting(XB, "l2", False, K, 0, True)
    rows = result["rows"]
    picks = [next(r for r in rows if r["family"] == f)
             for f in ("flat", "funnel", "pq", "ivfpq", "sq", "sqfunnel")]
    picks.append(next(r for r in rows if r["family"] == "ivf" and r["d_c"] < r["d_s"]))
    picks += [next(r for r in rows if r["family"] == "hnsw" and r["d_c"] == r["d_s"]),
              next(r for r in rows if r["family"] == "hnsw" and r["d_c"] < r["d_s"])]
    for row in picks:
        path = str(tmp_path / "x.faiss")
        ours = measure.export_searcher(setting, row)
        export_faiss(setting, row, path)
        D_o, I_o, _ = ours.search(XQ, K, **row["sweep"])
        D_f, I_f = _faiss().read_index(path).search(XQ, K)
        assert_knn_equal(D_o, I_o, D_f, I_f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("family, build, sweep", [
    ("sq", {"d": 8, "qtype": "8bit"}, {}), ("sq", {"d": 16, "qtype": "fp16"}, {}),
    ("sq", {"d": 4, "qtype": "fp16"}, {}), ("sqfunnel", {"d0": 4, "r": 16}, {"k0": 30}),
    ("sqfunnel", {"d0": 8, "r": 12}, {"k0": 10})])
def test_sq_families_export_what_faiss_serves_and_store_the_bytes_they_claim(tmp_path, family, build,
                                                                            sweep, metric):
    """Every SQ configuration tune can choose is one faiss file (IndexScalarQuantizer behind the
    prefix chain, or IndexRefine over it) whose ids equal ours (tie-aware), and its bytes per
    vector are the faiss code size (+ the float r-prefix a re-rank reads)."""
    faiss = _faiss()
    from adanns_ref.tune import grid
    setting = measure.Setting(XB, metric, True, K, 0, False)
    config = {"family": family, "build": build, "sweep": sweep}
    ours = measure.export_searcher(setting, config)
    path = str(tmp_path / "sq.faiss")
    export_faiss(setting, config, path)
    loaded = faiss.read_index(path)
    D_o, I_o, _ = ours.search(XQ, K, **sweep)
    D_f, I_f = loaded.search(XQ, K)
    assert_knn_equal(D_o, I_o, D_f, I_f, rtol=1e-4, atol=1e-5)
    params = {**build, **sweep}
    if family == "sq":
        sq = faiss.downcast_index(faiss.downcast_index(loaded).index)
        assert isinstance(sq, faiss.IndexScalarQuantizer) and sq.d == build["d"]
        assert grid.bytes_per_vector(family, params) == sq.code_size
    else:
        assert isinstance(faiss.downcast_index(loaded), faiss.IndexRefine)
        assert grid.bytes_per_vector(family, params) == build["d0"] + 4 * build["r"]


def test_sq_grid_follows_the_dims_and_quick_stays_small():
    from adanns_ref.tune import grid
    full = grid.builds(N, 64, K, [8, 16, 32, 64], quick=False, families=("sq", "sqfunnel"))
    sq = {(b["build"]["d"], b["build"]["qtype"]) for b in full if b["family"] == "sq"}
    assert sq == {(d, q) for d in (8, 16, 32, 64) for q in ("8bit", "fp16")}
    funnels = {(b["build"]["d0"], b["build"]["r"]) for b in full if b["family"] == "sqfunnel"}
    assert funnels == {(d0, r) for d0 in (8, 16, 32) for r in (16, 32, 64) if r > d0}
    quick = grid.builds(N, 64, K, [8, 16, 32, 64], quick=True, families=("sq", "sqfunnel"))
    assert {(b["build"]["d"], b["build"]["qtype"]) for b in quick if b["family"] == "sq"} == \
        {(8, "8bit"), (32, "8bit"), (64, "8bit")}
    assert [len(b["sweep"]) for b in quick if b["family"] == "sqfunnel"] == [2, 2]
    kept, pruned = grid.prune_budget(full, N, K, {"bytes": 40})
    assert pruned > 0 and all(grid.bytes_per_vector(b["family"], {**b["build"], **w}) <= 40
                              for b in kept for w in b["sweep"])


def test_exact_topk_blocks_agree_with_one_block():
    ids_small = data.exact_topk(XB, XQ, K, "l2", True, block=97)
    assert np.array_equal(ids_small, data.exact_topk(XB, XQ, K, "l2", True))
    assert np.array_equal(data.exact_topk(XB, XQ, K, "ip", True, block=50),
                          data.exact_topk(XB, XQ, K, "ip", True))


def test_dimension_mismatch(tmp_path, capsys):
    write_npy(tmp_path / "base.npy", XB)
    write_npy(tmp_path / "queries.npy", XQ[:, :8])
    argv = ["--base", str(tmp_path / "base.npy"), "--queries", str(tmp_path / "queries.npy"),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "dimension mismatch" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dimension mismatch"):
        tune(XB, np.ascontiguousarray(XQ[:, :8]), str(tmp_path / "out"), progress=None)


def test_hdf5_without_neighbors(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=XB)
        f.create_dataset("test", data=XQ)
        f.attrs["distance"] = "angular"
    assert main(["--hdf5", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "neighbors" in capsys.readouterr().err
    with pytest.raises(ValueError, match="neighbors"):
        data.load_hdf5(path, K)


def test_budget_no_configuration_meets(tmp_path, capsys):
    write_npy(tmp_path / "base.npy", XB)
    write_npy(tmp_path / "queries.npy", XQ)
    argv = ["--base", str(tmp_path / "base.npy"), "--queries", str(tmp_path / "queries.npy"),
            "--out", str(tmp_path / "out"), "--quick", "--budget-bytes", "1"]
    assert main(argv) == 2
    assert "none meets it; the cheapest is" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"none meets it; the cheapest is flat d=16"):
        tune(XB, XQ, str(tmp_path / "out"), dims=[16], budgets={"ms": 1e-12}, families=("flat",),
             progress=None)


def test_grid_scales_with_n_and_d():
    from adanns_ref.tune import grid
    assert grid.default_dims(768) == [8, 16, 32, 64, 128, 256, 512, 768]
    assert grid.default_dims(6) == [6]
    assert grid.nlists(1_000_000, quick=True) == [1024]
    assert grid.nlists(1_000_000, quick=False) == [512, 1024, 2048, 4096]
    assert grid.nlists(600, quick=False) == [15]  # 16, 32, 64, 128 all capped at N / 39
    assert grid.nprobes(1024, quick=False) == [1, 2, 4, 8, 16, 32, 64]


def test_budget_pruning_keeps_what_some_budget_accepts():
    from adanns_ref.tune import grid
    specs = grid.builds(N, D, K, [8, 16], quick=True)
    total = sum(len(s["sweep"]) for s in specs)
    kept, pruned = grid.prune_budget(specs, N, K, {"bytes": 40})
    assert pruned > 0 and sum(len(s["sweep"]) for s in kept) == total - pruned
    assert all(grid.bytes_per_vector(s["family"], {**s["build"], **w}) <= 40
               for s in kept for w in s["sweep"])
    # a second budget that cannot be checked in advance (ms) keeps everything
    assert grid.prune_budget(specs, N, K, {"bytes": 40, "ms": 1.0})[1] == 0


def test_choose_rules():
    from adanns_ref.tune import choose
    rows = [{"config": "a", "recall_val": 0.5, "ms_1t": 1.0, "mflops": 1.0, "bytes": 10},
            {"config": "b", "recall_val": 0.9, "ms_1t": 2.0, "mflops": 3.0, "bytes": 40},
            {"config": "c", "recall_val": 0.99, "ms_1t": 5.0, "mflops": 9.0, "bytes": 40}]
    none = dict.fromkeys(("ms", "mflops", "bytes", "recall"))
    assert choose.overall(rows, none)[0]["config"] == "b"  # fastest with recall >= 0.9
    assert choose.per_budget(rows, dict(none, ms=2.5))[0]["ms"]["config"] == "b"
    assert choose.per_budget(rows, dict(none, recall=0.95))[0]["recall"]["config"] == "c"
    assert choose.overall(rows, dict(none, bytes=40, recall=0.6))[0]["config"] == "b"
    chosen, failed = choose.per_budget(rows, dict(none, mflops=0.5))
    assert chosen == {} and re.search(r"--budget-mflops 0.5: none meets it; the cheapest is "
                                      r"a \(mflops=1\)", failed["mflops"])


def test_faiss_lsh_binarizes_at_x_ge_0_so_binary_codes_are_not_a_tune_family():
    """Why `grid` has no binary family: IndexLSH (faiss's only float-query Hamming index) sets a
    bit where x >= 0, `binary.binarize` (and the vector databases) where x > 0. If this fails,
    faiss changed and a binary family could export as IndexLSH."""
    faiss = _faiss()
    from adanns_ref.quantizers.binary import pack_lsb
    x = np.maximum(matryoshka_like(50, 3), 0)   # post-ReLU-like: many exact zeros
    lsh = faiss.IndexLSH(D, D, False, False)
    lsh.add(x)
    codes = faiss.vector_to_array(lsh.codes).reshape(50, -1)
    assert np.array_equal(codes, np.packbits(x >= 0, axis=1, bitorder="little"))
    assert not np.array_equal(codes, pack_lsb(x))


def test_hnsw_family_grid_and_bytes():
    from adanns_ref.core import cost
    from adanns_ref.tune import grid
    quick = [s for s in grid.builds(N, D, K, [4, 8, 16], quick=True) if s["family"] == "hnsw"]
    assert [s["build"] for s in quick] == [{"M": 16, "d_c": 4}, {"M": 16, "d_c": 16},
                                           {"M": 32, "d_c": 16}]  # HNSW32 at full D
    assert quick[0]["sweep"] == [{"d_s": d, "ef_search": ef} for d in (4, 8, 16) for ef in (16, 64)]
    full = [s for s in grid.builds(N, D, K, [4, 8, 16]) if s["family"] == "hnsw"]
    assert len(full) == 6 and all(w["d_s"] >= s["build"]["d_c"] for s in full for w in s["sweep"])
    assert grid.bytes_per_vector("hnsw", {"M": 16, "d_c": 4, "d_s": 16}) == \
        cost.bytes_per_vector_hnsw(4, 16, 16) == 4 * 4 + 4 * 16 + 4 * (32 + 16 / 15) + 12
    assert "hnsw" in measure.BUILDERS and measure.MONOTONE["hnsw"] == "ef_search"
