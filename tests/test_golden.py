import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from adanns_ref.golden import store as golden
from adanns_ref import testing
from adanns_ref.golden.cases import COMPONENTS
from adanns_ref.golden import ManifestError
from adanns_ref.testing import blas_kernels_match

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent
FLT_MAX = np.float32(3.4028235e38)
REGENERATE = "python -m adanns_ref.golden --out tests/golden"


@pytest.fixture(scope="module")
def manifest():
    return golden.load_manifest(GOLDEN)


@pytest.fixture(scope="module")
def report():
    return golden.check(GOLDEN)


@pytest.fixture
def copy(tmp_path):
    target = tmp_path / "golden"
    shutil.copytree(GOLDEN, target)
    return target


def _case(name):
    return golden.load_case(GOLDEN, name)


def _rewrite(directory, name, change, fix_hash=True):
    """Apply change(arrays) to case `name`'s file; optionally store the new SHA-256 in the manifest."""
    path = directory / f"{name}.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    change(arrays)
    data = golden._npz_bytes(arrays)
    path.write_bytes(data)
    if fix_hash:
        _edit_manifest(directory, lambda m: m["files"].__setitem__(f"{name}.npz", golden._sha256(data)))


def _edit_manifest(directory, change):
    path = directory / golden.MANIFEST
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def _failures(report):
    return {name: problems for name, problems in report.items() if problems}


# ----------------------------------------------------------------- the committed set


@pytest.mark.blas_kernel
def test_regenerated_set_matches_the_committed_one(tmp_path, manifest):
    """Exact-path cases: the same bytes on any machine. OPQ cases (GEMM, QR, SVD): the same bytes
    where NumPy and SciPy run the BLAS kernels that computed the committed set (manifest "blas"),
    otherwise the manifest's tolerances per output, as --check applies them (ids and codes exact)."""
    out = tmp_path / "regenerated"
    regenerated = golden.generate(out)
    assert sorted(os.listdir(out)) == sorted(os.listdir(GOLDEN)), f"file set changed; {REGENERATE}"
    same_kernels = blas_kernels_match(manifest["blas"])
    via_blas = {c["file"]: c for c in manifest["cases"] if not c["exact_path"]}
    assert set(via_blas) == {"opq_rotation.npz", "pqindex_adanns_opq.npz", "ivfpq_adanns_opq_nbits4.npz"}
    by_bytes = [f for f in sorted(os.listdir(GOLDEN))
                if f != golden.MANIFEST and (same_kernels or f not in via_blas)]
    changed = [f for f in by_bytes if (out / f).read_bytes() != (GOLDEN / f).read_bytes()]
    assert not changed, f"behaviour changed in {changed}; review, then {REGENERATE}"
    if same_kernels:
        assert (out / golden.MANIFEST).read_bytes() == (GOLDEN / golden.MANIFEST).read_bytes(), REGENERATE
        return
    # another BLAS kernel: the manifest differs only in the kernels and the OPQ files' hashes ...
    drop = lambda m: {**m, "blas": None, "files": {f: h for f, h in m["files"].items() if f not in via_blas}}
    assert drop(regenerated) == drop(manifest), f"manifest changed; {REGENERATE}"
    assert regenerated["blas"] == testing.blas_kernels(golden.RECORDED_BLAS)
    # ... and the OPQ cases hold the same inputs and outputs within the manifest's tolerances
    for name, case in via_blas.items():
        with np.load(out / name) as new, np.load(GOLDEN / name) as old:
            assert sorted(new.files) == sorted(old.files)
            for key in new.files:
                if not key.startswith("out_"):
                    np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name} {key}")
            problems = [p for n, spec in case["outputs"].items()
                        for p in golden._compare(n, new[f"out_{n}"], old[f"out_{n}"], spec)]
            assert not problems, f"{name} on BLAS kernels {regenerated['blas']}: {problems}"


def test_check_passes_on_the_committed_set(report, manifest):
    assert set(report) == {c["name"] for c in manifest["cases"]}
    assert not _failures(report)


def test_cli_check_exit_codes(copy, capsys):
    assert golden.main(["--check", str(GOLDEN)]) == 0
    out = capsys.readouterr().out
    assert "ok    kmeans_l2" in out and out.endswith(" passed, 0 failed\n")
    _rewrite(copy, "flat_ip", lambda a: a["out_I"].__setitem__((0, 0), a["out_I"][0, 1]))
    # the real entry point, as CI and users run it
    bad = subprocess.run([sys.executable, "-m", "adanns_ref.golden", "--check", str(copy)], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "FAIL  flat_ip" in bad.stdout and bad.stdout.endswith(" passed, 1 failed\n")


def test_committed_set_is_small_and_covers_every_component(manifest):
    size = sum((GOLDEN / f).stat().st_size for f in os.listdir(GOLDEN))
    assert size <= 2 * 1024 * 1024
    assert {c["component"] for c in manifest["cases"]} == set(COMPONENTS)
    # every case file is an uncompressed zip with the fixed timestamp (bytes independent of the clock)
    for c in manifest["cases"]:
        with zipfile.ZipFile(GOLDEN / c["file"]) as zf:
            assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_cases_exercise_what_they_claim(manifest):
    assert _case("kmeans_empty_split")[2]["nsplit"].sum() > 0
    assert _case("kmeans_l2")[2]["nsplit"].sum() == 0
    params, inputs, out = _case("kmeans_subsample")
    kp = params["kmeans"]
    assert len(inputs["x"]) > kp["k"] * kp["max_points_per_centroid"]
    assert len(_case("kmeans_spherical_nredo")[2]["obj"]) > _case("kmeans_spherical_nredo")[2]["n_iter"]
    assert (_case("flat_l2_padding")[2]["D"][:, -1] == FLT_MAX).all()
    _, _, out = _case("ivf_ip_padding")
    assert ((out["I"] == -1) == (out["D"] == -FLT_MAX)).all() and (out["I"] == -1).any()
    ivf = [c["params"]["index"] for c in manifest["cases"] if c["component"] == "ivf"]
    assert any(p["d_c"] is not None and p["d_s"] is not None and p["d_c"] < p["d_s"] for p in ivf)
    assert any(p["d_c"] is not None and p["d_s"] is not None and p["d_c"] > p["d_s"] for p in ivf)
    assert {c["params"]["pq"]["nbits"] for c in manifest["cases"] if c["component"] == "pq"} == {4, 8}
    assert _case("pq_nbits4")[2]["codes"].shape[1] == 3  # 5 sub-codes of 4 bits
    assert _case("ivfpq_adanns_opq_nbits4")[0]["index"]["d_c"] != _case("ivfpq_adanns_opq_nbits4")[0]["index"]["d_s"]
    _, inputs, out = _case("metrics")
    for k in (5, 10):
        assert out[f"map_at_{k}_standard"] > out[f"map_at_{k}_adanns"]  # a label rarer than k
        hits = (inputs["db_labels"][inputs["I"][:, :k]] == inputs["q_labels"][:, None]) & (inputs["I"][:, :k] >= 0)
        assert out[f"recall_at_{k}_adanns"] == pytest.approx(hits.sum(axis=1).mean() / 1300, rel=1e-12)
    assert (inputs["I"] == -1).any()
    assert not np.isin(inputs["q_labels"], inputs["db_labels"]).all()


def test_outputs_on_exact_paths_are_flagged_and_opq_cases_are_not(manifest):
    for c in manifest["cases"]:
        uses_opq = c["component"] == "opq" or c["params"].get("index", {}).get("opq", False)
        assert c["exact_path"] is (not uses_opq), c["name"]
        for name, spec in c["outputs"].items():
            if spec["dtype"][1] in "iub":
                assert spec["compare"] == "exact", (c["name"], name)


# ----------------------------------------------------------------- agreement with faiss


@pytest.fixture
def faiss_one_thread():
    """faiss on one OpenMP thread: these problems are tiny, and spinning threads on a shared
    machine cost seconds (the results do not depend on the thread count)."""
    faiss = pytest.importorskip("faiss")
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield faiss
    faiss.omp_set_num_threads(threads)


def test_golden_kmeans_flat_ivf_pq_opq_ivfpq_match_faiss(manifest, faiss_one_thread):
    faiss = faiss_one_thread
    from faiss.contrib.inspect_tools import get_invlist
    for c in manifest["cases"]:
        params, a, out = _case(c["name"])
        if c["component"] == "kmeans":
            kp = params["kmeans"]
            km = faiss.Kmeans(a["x"].shape[1], kp["k"], niter=kp["niter"], seed=kp["seed"], nredo=kp["nredo"],
                              max_points_per_centroid=kp["max_points_per_centroid"],
                              spherical=kp["spherical"], verbose=False)
            km.train(a["x"])
            np.testing.assert_array_equal(km.centroids, out["centroids"], err_msg=c["name"])
            np.testing.assert_array_equal(np.array(km.obj, np.float32), out["obj"], err_msg=c["name"])
        elif c["component"] == "flat":
            index = (faiss.IndexFlatL2 if params["metric"] == "l2" else faiss.IndexFlatIP)(a["xb"].shape[1])
            index.add(a["xb"])
            D, I = index.search(a["xq"], params["k"])
            np.testing.assert_array_equal(I, out["I"])
            np.testing.assert_array_equal(D, out["D"])
        elif c["name"] in ("ivf_flat_l2", "ivfpq_l2"):
            p = params["index"]
            quantizer = faiss.IndexFlatL2(p["d"])
            if c["component"] == "ivf":
                index = faiss.IndexIVFFlat(quantizer, p["d"], p["nlist"])
            else:
                index = faiss.IndexIVFPQ(quantizer, p["d"], p["nlist"], p["M"], p["nbits"])
            index.train(a["xb"])
            index.add(a["xb"])
            index.nprobe = params["search"]["nprobe"]
            D, I = index.search(a["xq"], params["search"]["k"])
            np.testing.assert_array_equal(quantizer.reconstruct_n(0, p["nlist"]), out["centroids"])
            lists = [get_invlist(index.invlists, l) for l in range(p["nlist"])]
            np.testing.assert_array_equal(np.concatenate([ids for ids, _ in lists]), out["list_ids"])
            if c["component"] == "ivfpq":
                np.testing.assert_array_equal(np.concatenate([codes for _, codes in lists]), out["list_codes"])
            np.testing.assert_array_equal(I, out["I"])
            np.testing.assert_allclose(D, out["D"], rtol=1e-5, atol=1e-6)
        elif c["component"] == "pq":
            p = params["pq"]
            pq = faiss.ProductQuantizer(p["d"], p["M"], p["nbits"])
            pq.cp.seed, pq.cp.niter = p["seed"], p["niter"]
            pq.train(a["xb"])
            np.testing.assert_array_equal(faiss.vector_to_array(pq.centroids), out["codebooks"].ravel())
            np.testing.assert_array_equal(pq.compute_codes(a["xb"]), out["codes"])
            np.testing.assert_array_equal(pq.decode(out["codes"][:8]), out["decoded"])
        elif c["component"] == "opq":
            p = params["opq"]
            opq = faiss.OPQMatrix(p["d"], p["M"])
            opq.niter, opq.niter_pq, opq.niter_pq_0 = p["niter"], p["niter_pq"], p["niter_pq_0"]
            opq.train(a["x"])
            A = faiss.vector_to_array(opq.A).reshape(p["d"], p["d"])
            np.testing.assert_allclose(A, out["A"], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------- tampering is reported


def test_a_changed_id_is_reported_with_its_case_and_output(copy):
    _rewrite(copy, "ivf_flat_l2", lambda a: a["out_I"].__setitem__((3, 2), 999))
    failures = _failures(golden.check(copy))
    assert list(failures) == ["ivf_flat_l2"]
    assert any(p.startswith("out_I: 1 of 120 values differ (exact comparison)")
               and p.endswith("recomputed 47, stored 999")
               for p in failures["ivf_flat_l2"])


def test_distance_tolerance_is_applied(copy):
    def nudge(scale):
        return lambda a: a["out_D"].__setitem__((0, 0), a["out_D"][0, 0] * np.float32(1 + scale))
    _rewrite(copy, "pq_nbits8", nudge(3e-7))  # within rtol 1e-5
    assert not _failures(golden.check(copy))
    _rewrite(copy, "pq_nbits8", nudge(1e-3))
    failures = _failures(golden.check(copy))
    assert list(failures) == ["pq_nbits8"]
    assert "out_D: 1 of 50 values differ beyond rtol=1e-05 atol=1e-06" in failures["pq_nbits8"][0]


def test_wrong_hash_missing_and_unlisted_files_are_reported(copy):
    data = bytearray((copy / "metrics.npz").read_bytes())
    data[-200] ^= 1
    (copy / "metrics.npz").write_bytes(bytes(data))
    (copy / "funnel_l2.npz").unlink()
    (copy / "stray.npz").write_bytes(b"x")
    failures = _failures(golden.check(copy))
    assert any("metrics.npz: SHA-256" in p for p in failures["metrics"])
    assert failures["funnel_l2"] == ["funnel_l2.npz: missing"]
    assert failures["stray.npz"] == ["stray.npz: not listed in the manifest"]
    with pytest.raises(ValueError, match="SHA-256 differs"):
        golden.load_case(copy, "metrics")


def test_params_stored_in_the_file_must_match_the_manifest(copy):
    _edit_manifest(copy, lambda m: m["cases"][0]["params"]["kmeans"].__setitem__("k", 11))
    failures = _failures(golden.check(copy))
    assert failures == {"kmeans_l2": ["kmeans_l2.npz: params differ from the manifest's params"]}


def test_an_array_the_manifest_does_not_describe_is_reported(copy):
    _rewrite(copy, "flat_ip", lambda a: a.__setitem__("out_extra", np.zeros(2)))
    failures = _failures(golden.check(copy))
    assert "out_extra" in failures["flat_ip"][0]


@pytest.mark.parametrize("change, match", [
    (lambda m: m.__setitem__("version", 2), "version: this code reads version 1"),
    (lambda m: m.__setitem__("format", "other"), "format: expected 'adanns-ref-golden'"),
    (lambda m: m.pop("files"), "files: must be a non-empty object"),
    (lambda m: m["cases"][0].pop("component"), r"cases\[0\]: missing fields \['component'\]"),
    (lambda m: m["cases"][1].__setitem__("component", "lsh"), "unknown component 'lsh'"),
    (lambda m: m["cases"][1].__setitem__("name", m["cases"][0]["name"]), "unique"),
    (lambda m: m["cases"][0]["outputs"]["centroids"].__setitem__("compare", "fuzzy"),
     "compare must be 'exact' or 'close'"),
    (lambda m: m["cases"][0]["outputs"]["centroids"].__setitem__("rtol", -1), "rtol must be a number >= 0"),
    (lambda m: m["files"].__setitem__("../escape.npz", "0" * 64), "plain file name"),
    (lambda m: m["files"].__setitem__("README.md", "xyz"), "64-hex-digit SHA-256"),
    (lambda m: m.__setitem__("blas", {"numpy": "Haswell"}), "blas: must be an object"),
])
def test_bad_manifest_raises_a_clear_error(copy, change, match):
    _edit_manifest(copy, change)
    with pytest.raises(ManifestError, match=match):
        golden.check(copy)


def test_unreadable_or_absent_manifest(copy, tmp_path, capsys):
    (copy / golden.MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="not readable JSON"):
        golden.load_manifest(copy)
    assert golden.main(["--check", str(copy)]) == 2
    assert "not readable JSON" in capsys.readouterr().err
    with pytest.raises(ManifestError, match="not found"):
        golden.check(tmp_path / "nowhere")


# ----------------------------------------------------------------- writing


def test_generate_refuses_a_directory_with_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by adanns_ref.golden"):
        golden.generate(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert golden.main(["--out", str(tmp_path)]) == 2


def test_load_case_returns_the_stored_arrays():
    params, inputs, outputs = golden.load_case(GOLDEN, "funnel_l2")
    assert params["stages"][0] == [4, 40]
    assert inputs["xb"].dtype == np.float32 and outputs["I"].dtype == np.int64
    with pytest.raises(ValueError, match="no case 'nope'"):
        golden.load_case(GOLDEN, "nope")


def test_generate_replaces_an_earlier_golden_directory(copy):
    _edit_manifest(copy, lambda m: m["files"].__setitem__("old_case.npz", "0" * 64))
    (copy / "old_case.npz").write_bytes(b"obsolete")
    golden.generate(copy)
    assert sorted(os.listdir(copy)) == sorted(os.listdir(GOLDEN))
    assert not _failures(golden.check(copy))
