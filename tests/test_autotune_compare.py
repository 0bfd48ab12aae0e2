"""experiments/autotune_compare.py runs end to end at small sizes (the real run is the lead's, on
a quiet machine) and its table states, per budget, both choices measured the same way."""
import json

import pytest

pytest.importorskip("faiss")


def test_autotune_compare_small(tmp_path, capsys):
    from experiments import autotune_compare
    assert autotune_compare.main(["--small", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "autotune.md").read_text()
    results = json.loads((tmp_path / "autotune.json").read_text())
    assert [r["data"] for r in results] == ["fashion-mnist-pca", "synthetic"]
    for res in results:
        assert [(l["budget"], l["value"]) for l in res["lines"]][:2] == [("recall", 0.9),
                                                                      ("recall", 0.95)]
        for line in res["lines"]:
            for side in ("autotune", "tune"):
                row = line[side]
                if row is not None:
                    assert 0 <= row["recall_test"] <= 1 and row["ms_1t"] > 0
    assert md.count("| fashion-mnist-pca (N=6000, D=32) |") == 5
    assert md.count("| synthetic (N=3000, D=32) |") == 5
    assert "HNSW32" in md or "IVF64,Flat" in md or "OPQ16" in md


def test_numpy_truth_matches_a_direct_argsort():
    import numpy as np
    from experiments.autotune_compare import numpy_l2_truth
    rng = np.random.default_rng(0)
    xb, xq = rng.standard_normal((500, 8)).astype(np.float32), rng.standard_normal((7, 8)).astype(np.float32)
    d = ((xq[:, None, :].astype(np.float64) - xb[None]) ** 2).sum(-1)
    assert np.array_equal(numpy_l2_truth(xb, xq, 5, block=64), np.argsort(d, axis=1)[:, :5])
