"""The `paper` preset of `python -m experiments.reproduce`: its settings are consistent with the
papers' dims, and every paper-only code path runs end to end on a scaled-down copy (embedded
subset, 1 epoch, 1 seed, hidden [32], nesting 8..128) in-process."""
import csv
import json

import pytest

from experiments.reproduce import main as repro_main
from experiments.reproduce.mrl import retrieval_configs

PAPER = repro_main.PRESETS["paper"]

TINY_PAPER = dict(
    PAPER, n_seeds=1, subset="embedded", composites=(2000, 400), hidden=[32], epochs=1, warmup=0,
    nesting=[8, 16, 32, 64, 128], ff_sizes=[8, 16, 128], baseline_dims=[8, 16],
    adaptive_dims=[8, 16], rerank_dims=[128], funnel_dims=[8, 16, 32, 128],
    funnel_shortlists=[50, 25, 10], ivf_nlists=[8], ivf_dcs=[8, 16, 128], ivf_dss=[8, 32, 128],
    ivf_d_dss=[8, 32], opq_budgets=[4, 8], opq_ff_budgets=[8, 16], opq_dims=[8, 16, 32],
    opq_niter=1, ivfpq_nlist=4, ivfopq_budgets=[4, 8], ivfopq_dcs=[8, 32], pq_train_size=None,
    hnsw_dims=[8, 128], hnsw_ds=[8, 128], hnsw_M=8, hnsw_efc=16, hnsw_efs=[8, 32], pruning_queries=100)


def test_paper_preset_settings_follow_the_papers_dims():
    nest, D = PAPER["nesting"], PAPER["nesting"][-1]
    assert D == 2048 and nest == [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert PAPER["embedding"] == "gelu" and PAPER["n_seeds"] == 5 and PAPER["lr"] == 0.05
    assert PAPER["pruning_queries"] == 1000
    assert PAPER["task"] == "fmnist3" and PAPER["composites"] == (60000, 10000)
    assert PAPER["subset"] is None and PAPER["per_class"] is None
    for other in ("tiny", "small", "full"):  # Fashion-MNIST itself stays their task
        assert repro_main.PRESETS[other].get("task", "fmnist") == "fmnist"
    assert repro_main.PRESETS["full"]["n_seeds"] >= 3
    for key in ("ff_sizes", "baseline_dims", "adaptive_dims", "rerank_dims", "funnel_dims",
                "ivf_dcs", "ivf_dss", "ivf_d_dss", "opq_dims", "hnsw_dims", "hnsw_ds"):
        assert set(PAPER[key]) <= set(nest), key
    assert D in PAPER["ff_sizes"] and min(PAPER["ff_sizes"]) == 8  # mrl-e control: FF-8 vs FF-D
    assert set(PAPER["hnsw_dims"]) <= set(PAPER["ff_sizes"])   # FF-HNSW at every graph dim
    # symmetric grids (issue 24): rigid HNSW graphs at every dim AdANNS-HNSW re-scores at; IVF
    # d_s up to D (exp4 searches every d_s of ivf_dss and ivf_dcs at every d_c)
    assert set(PAPER["hnsw_ds"]) <= set(PAPER["hnsw_dims"])
    assert D in PAPER["ivf_dss"] or D in PAPER["ivf_dcs"]
    # the paper's adaptive retrieval (16 -> 2048, shortlist 200) and funnel
    configs = retrieval_configs(dict(PAPER, D=D))
    assert ("adaptive", [(16, 200), (2048, 10)]) in configs
    assert [c for c in configs if c[0] == "funnel"] == [
        ("funnel", [(8, 200), (16, 100), (32, 50), (64, 25), (128, 10), (2048, 10)])]
    assert len([c for c in configs if c[0] == "adaptive"]) == 4
    # AdANNS-OPQ at M bytes against rigid OPQ at 2M on FF-2048: 8 vs 16 and 16 vs 32 bytes (the
    # paper's 32 vs 64 was dropped on both sides to fit 75 minutes)
    assert PAPER["opq_budgets"] == [8, 16] and PAPER["opq_ff_budgets"] == [16, 32]
    assert all(2 * m in PAPER["opq_ff_budgets"] for m in PAPER["opq_budgets"])
    # AdANNS-IVFOPQ has both regimes d_c < d_s and d_c >= d_s
    dss = [d for d in PAPER["opq_dims"] if d >= min(PAPER["ivfopq_budgets"])]
    assert any(c >= s for c in PAPER["ivfopq_dcs"] for s in dss)
    assert any(c < s for c in PAPER["ivfopq_dcs"] for s in dss)


def _table(out, name):
    with open(out / "tables" / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    mp = pytest.MonkeyPatch()
    mp.setitem(repro_main.PRESETS, "paper", TINY_PAPER)
    try:
        assert repro_main.main(["--preset", "paper", "--out", str(out)]) == 0
    finally:
        mp.undo()
    return out


def test_paper_paths_run_end_to_end(paper_run):
    out = paper_run
    claims = json.loads((out / "claims.json").read_text())
    assert claims["preset"] == "paper" and len(claims["claims"]) >= 12
    assert all(c["verdict"] for c in claims["claims"])
    ivf = next(c for c in claims["claims"] if c["id"] == "adanns-ivf-less-compute")
    assert ivf.get("saving_on") == "MFLOPs" or ivf["verdict"] == "not applicable at this scale"
    # symmetric grids: no claim of this run is decided by, or refused for, a grid hole
    assert not [c for c in claims["claims"] if c["verdict"] == "not applicable at these budgets"], \
        [c["measured"] for c in claims["claims"] if c["verdict"] == "not applicable at these budgets"]
    # exp1's claims are decided on R-precision, which the composite task's exp1 rows carry
    svd = next(c for c in claims["claims"] if c["id"] == "mrl-vs-svd")
    assert svd["metric"] == "R-precision" and not svd["metric_note"], svd
    assert "mAP@R (not judged)" in svd["measured"]
    # the train stages record the GELU embedding and the composite task; no prefix collapses to zero
    manifest = [p.read_text() for p in (out / "cache" / "train_mrl_s0").glob("*.json")]
    assert any('"embedding": "gelu"' in t and '"task": "fmnist3"' in t for t in manifest)
    exp1 = _table(out, "exp1_dims")
    assert {int(r["dim"]) for r in exp1 if r["model"] == "FF"} == {8, 16, 128}
    assert {int(r["dim"]) for r in exp1 if r["model"] == "SVD"} == {8, 16}
    assert {int(r["dim"]) for r in exp1 if r["model"] == "MRL"} == {8, 16, 32, 64, 128}
    assert all(float(r["zero_prefix"]) == 0.0 for r in exp1 if r["model"] in ("MRL", "MRL-E", "FF"))
    # the deciding metric with headroom is recorded on every exp1 row of the composite task
    assert all(0.0 <= float(r["mapr"]) <= float(r["rprec"]) <= 1.0 for r in exp1)
    exp3 = _table(out, "exp3_retrieval")
    assert {r["config"] for r in exp3 if r["method"] == "funnel"} == {"8@50 -> 16@25 -> 32@10 -> 128@10"}
    assert {(int(r["d_shortlist"]), int(r["d_rerank"])) for r in exp3 if r["method"] == "adaptive"} == \
        {(8, 128), (16, 128)}
    report = (out / "report.md").read_text()
    assert "Every configuration that re-ranks at D = 128" in report
    assert "Fashion-MNIST composites" in report and "Headroom on the deciding metric (R-precision)" in report
    assert "| MRL | 128 |" in report and "MLP 2352-32-128" in report and "2000 composites" in report
    assert "fewer MFLOPs than exact at MRL's 99 %-variance dim" in report
    assert report.count("| adaptive | ") >= 2 and "wall-clock speed-up (x)" in report
    exp4 = _table(out, "exp4_ivf")
    ada = {(int(r["d_c"]), int(r["d_s"])) for r in exp4 if r["method"] == "AdANNS-IVF"}
    assert {d for d, _ in ada} == {8, 16, 128} and (16, 16) in ada and (16, 8) in ada
    assert {int(r["d_s"]) for r in exp4 if r["method"] == "AdANNS-IVF-D"} == {8, 32}
    assert {int(r["d_c"]) for r in exp4 if r["method"] == "FF-IVF"} == {8, 16, 128}
    exp5 = _table(out, "exp5_opq")
    assert {int(r["M"]) for r in exp5 if r["method"] == "FF-OPQ"} == {8, 16}
    assert {int(r["M"]) for r in exp5 if r["method"] == "AdANNS-OPQ"} == {4, 8}
    assert {int(r["d"]) for r in exp5 if r["method"] == "AdANNS-OPQ"} <= {8, 16, 32}
    assert not [r for r in exp5 if r["method"] == "MR-OPQ"]  # D not in opq_dims
    ivfopq = [(int(r["d_c"]), int(r["d"])) for r in exp5 if r["method"] == "AdANNS-IVFOPQ"]
    if ivfopq:  # adanns_ref.indices.ivfpq present
        assert any(c >= s for c, s in ivfopq) and any(c < s for c, s in ivfopq)
    # exp9 searches the preset's seeded query subset; its rows say how many
    exp9 = _table(out, "exp9_pruning")
    assert {r["method"] for r in exp9} == {"MRL", "MRL-permuted", "FF-128"}
    assert "Exact top-10 of 100 test queries" in report


def test_reference_is_a_prefix_of_the_stored_exact_top_k():
    import numpy as np

    from adanns_ref.search.knn import knn_search
    from adanns_ref.core.truncate import prefix
    from experiments.reproduce.mrl import GT_K, reference

    rng = np.random.default_rng(0)
    db = np.round(rng.standard_normal((300, 6)), 1).astype(np.float32)  # rounded: ties occur
    q = np.round(rng.standard_normal((40, 6)), 1).astype(np.float32)
    model = {"gt": knn_search(prefix(q, 6), prefix(db, 6), GT_K)[1]}
    np.testing.assert_array_equal(reference(model, 4), knn_search(prefix(q, 6), prefix(db, 6), 4)[1])
    with pytest.raises(ValueError, match="exceeds the stored exact top"):
        reference(model, GT_K + 1)
