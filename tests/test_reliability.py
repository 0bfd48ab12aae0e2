"""Regression tests of issue 26 (reliability of the HNSW, SQ, binary, funnel, Dask, golden and
loader surfaces): one test per defect, each failing on the code before the fix."""
import numpy as np
import pytest

from adanns_ref import funnel
from adanns_ref.core import truncate
from adanns_ref import BinaryIVFIndex, FunnelIndex, HNSWIndex, IVFIndex, IVFPQIndex, SQIndex
from adanns_ref.quantizers.binary import pack_lsb


def _x(n=500, d=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ----------------------------------------------------------------- one "train after add" rule

def test_sqindex_train_after_add_is_refused_naming_reset():
    x = _x()
    index = SQIndex(16, "8bit")
    index.train(x)
    index.add(x)
    with pytest.raises(ValueError, match=r"reset\(\)"):
        index.train(x * 100)
    D, I = index.search(x[:20], 1)
    assert (I[:, 0] == np.arange(20)).all()  # the codes still decode with their own ranges
    index.reset()
    index.train(x * 100)  # allowed once emptied


def test_binary_ivf_train_after_add_is_refused_naming_reset():
    codes = pack_lsb(_x(500, 64))
    index = BinaryIVFIndex(64, 8).train(codes)
    index.add(codes)
    with pytest.raises(ValueError, match=r"reset\(\)"):
        index.train(codes[::-1])
    _, I = index.search(codes[:50], 1, nprobe=1)
    assert (I[:, 0] >= 0).all()
    index.reset()
    index.train(codes[::-1])


def test_binary_ivf_set_centroids_keeps_or_refuses_never_drops_codes():
    codes = pack_lsb(_x(500, 64))
    index = BinaryIVFIndex(64, 8).train(codes)
    index.add(codes)
    with pytest.raises(ValueError, match=r"reset\(\)"):
        index.set_centroids(index.centroids)
    assert index.ntotal == 500


@pytest.mark.parametrize("make", [
    lambda: IVFIndex(16, 4), lambda: IVFPQIndex(16, 4, M=4, nbits=4, allow_small=True)])
def test_ivf_families_share_the_train_after_add_message(make):
    x = _x()
    index = make()
    index.train(x)
    index.add(x)
    with pytest.raises(ValueError, match=r"holds 500 vectors .*call reset\(\) before re-training"):
        index.train(x)


def test_hnsw_reset_then_rebuild_matches_faiss():
    faiss = pytest.importorskip("faiss")
    x, y, q = _x(300, 16, 1), _x(200, 16, 2), _x(20, 16, 3)
    ours = HNSWIndex(16, M=8)
    ours.add(x)
    ours.reset()
    assert ours.ntotal == 0 and ours.entry_point == -1
    ours.add(y)
    ref = faiss.IndexHNSWFlat(16, 8)
    ref.add(x)
    ref.reset()
    ref.add(y)  # faiss keeps the level RNG's state across reset(): so do we
    assert np.array_equal(faiss.vector_to_array(ref.hnsw.levels) - 1, ours.levels)
    assert np.array_equal(ref.search(q, 5)[1], ours.search(q, 5)[1])


# ----------------------------------------------------------------- one result-size guard

def test_hnsw_rescoring_candidates_go_through_the_result_size_guard():
    index = HNSWIndex(16, M=4, d_c=8, d_s=16)
    index.add(_x(50))
    with pytest.raises(ValueError, match=r"max\(ef_search, k\).*GiB"):
        index.search(_x(64), 1, ef_search=2**24)


def test_mixed_funnel_shortlists_are_size_checked():
    x = _x(100)
    with pytest.raises(ValueError, match="GiB"):
        funnel.mixed_funnel_search(x, x[:4], [(8, "float", 2**40), (16, "float", 2)])
    with pytest.raises(ValueError, match="GiB"):
        funnel.mixed_funnel_search(x, x[:4], [(8, "float", None), (16, "float", 2)], oversample=1e300)
    with pytest.raises(ValueError, match="finite"):
        funnel.mixed_funnel_search(x, x[:4], [(8, "float", None), (16, "float", 2)],
                                   oversample=float("inf"))


# ----------------------------------------------------------------- nlist bound

@pytest.mark.parametrize("make", [lambda n: IVFIndex(16, n), lambda n: IVFPQIndex(16, n, M=4),
                                  lambda n: BinaryIVFIndex(64, n)])
def test_huge_nlist_is_a_value_error_not_memory_error(make):
    with pytest.raises(ValueError, match="nlist must be <="):
        make(2**40)


def test_binary_ivf_load_checks_nlist_before_allocating(tmp_path):
    from adanns_ref.core.persist import save_npz
    path = tmp_path / "b.npz"
    save_npz(path, "BinaryIVFIndex", 1, {"d_bits": 64, "nlist": 2**41, "niter": 10, "seed": 1,
                                         "max_points_per_centroid": 256},
             {"centroids": np.empty((0, 8), np.uint8), "codes": np.empty((0, 8), np.uint8)})
    with pytest.raises(ValueError, match=str(path)):
        BinaryIVFIndex.load(path)


# ----------------------------------------------------------------- FunnelIndex and edits

def test_funnel_index_detects_an_edited_database():
    x = _x(1000, 32)
    index = FunnelIndex(x, [8, 32])
    index.verify()
    x[700, 5] += 1.0
    with pytest.raises(ValueError, match="modified after it was prepared"):
        index.verify()


# ----------------------------------------------------------------- flags

def test_normalize_must_be_a_bool_everywhere():
    x = _x(50)
    with pytest.raises(TypeError, match="normalize"):
        funnel.funnel_search(x, x[:2], [(8, 5)], normalize=1)
    with pytest.raises(TypeError, match="normalize"):
        truncate.prefix(x, 8, normalize=1)
    with pytest.raises(TypeError, match="normalize"):
        funnel.rerank(np.zeros((2, 3), np.int64), x, x[:2], 8, 2, normalize=1)


# ----------------------------------------------------------------- faiss bridge

@pytest.mark.parametrize("metric_name", ["METRIC_L1", "METRIC_Linf", "METRIC_Lp", "METRIC_Canberra"])
def test_from_faiss_refuses_hnsw_with_an_unsupported_metric(metric_name):
    faiss = pytest.importorskip("faiss")
    from adanns_ref import from_faiss
    f = faiss.IndexHNSWFlat(8, 4, getattr(faiss, metric_name))
    f.add(_x(100, 8))
    with pytest.raises(ValueError, match="metric_type"):
        from_faiss(f)


def test_from_faiss_refuses_an_ivf_whose_quantizer_is_short_of_centroids():
    faiss = pytest.importorskip("faiss")
    from adanns_ref import from_faiss
    quantizer = faiss.IndexFlatL2(8)
    ivf = faiss.IndexIVFFlat(quantizer, 8, 16)
    quantizer.add(_x(5, 8))
    ivf.is_trained = True
    with pytest.raises(ValueError, match="holds 5 centroids but .* nlist=16"):
        from_faiss(ivf)


def test_to_faiss_writable_must_be_a_bool():
    pytest.importorskip("faiss")
    from adanns_ref import to_faiss
    index = IVFIndex(16, 4, d_c=8)
    index.train(_x())
    with pytest.raises(TypeError, match="writable"):
        to_faiss(index, writable="yes")


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_writable_adanns_ivf_reads_back_through_a_file(tmp_path, normalize, metric):
    faiss = pytest.importorskip("faiss")
    from adanns_ref import to_faiss
    from adanns_ref import from_faiss
    x = _x(400, 32)
    index = IVFIndex(32, 8, d_c=8, d_s=16, normalize=normalize, metric=metric)
    index.train(x)
    index.add(x)
    path = str(tmp_path / "adanns.faiss")
    faiss.write_index(to_faiss(index, writable=True), path)
    back = from_faiss(faiss.read_index(path), xb=x)
    assert (back.d_c, back.d_s, back.normalize, back.metric) == (8, 16, normalize, metric)
    for ours, theirs in zip(index.search(x[:20], 5, nprobe=3), back.search(x[:20], 5, nprobe=3)):
        assert np.array_equal(ours, theirs)


# ----------------------------------------------------------------- one Dask entry check

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_knn_refuses_nan_like_the_in_process_path(dask_client):
    da = pytest.importorskip("dask.array")
    from adanns_ref import knn_search
    x = _x(200)
    x[150, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf .*row 150"):
        knn_search(x[:5], da.from_array(x, chunks=64), 3, client=dask_client)
    big = _x(200).astype(np.float64)
    big[7, 0] = 1e300  # beyond float32: inf after the one conversion, as in-process
    with pytest.raises(ValueError, match="NaN or Inf .*row 7"):
        knn_search(x[:5], da.from_array(big, chunks=64), 3, client=dask_client)


def test_dask_knn_converts_float64_and_refuses_non_real_dtypes(dask_client):
    da = pytest.importorskip("dask.array")
    from adanns_ref import knn_search
    x = _x(300)
    want = knn_search(x[:7], x, 4)
    got = knn_search(x[:7], da.from_array(x.astype(np.float64), chunks=100), 4, client=dask_client)
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    for bad in (x.astype(np.complex64), x.astype(object), x.astype(str)):
        with pytest.raises(TypeError, match="real numeric"):
            knn_search(x[:7], da.from_array(bad, chunks=100), 4, client=dask_client)


def test_dask_closed_client_or_cluster_and_no_workers_are_value_errors(monkeypatch):
    distributed = pytest.importorskip("distributed")
    from adanns_ref import distributed as dist
    from adanns_ref import knn_search
    x = _x(100)
    cluster = distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    cluster.close()
    with pytest.raises(ValueError, match="client is closed|cannot reach its scheduler"):
        knn_search(x[:2], x, 2, client=client)
    client.close()
    with pytest.raises(ValueError, match="client is closed"):
        knn_search(x[:2], x, 2, client=client)
    monkeypatch.setattr(dist, "WORKER_TIMEOUT", 1.0)
    cluster = distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        with pytest.raises(ValueError, match="no worker after 1 s"):
            knn_search(x[:2], x, 2, client=client)
        with pytest.raises(ValueError, match="no worker"):
            IVFIndex(16, 4).train(x, client=client)
    finally:
        client.close()
        cluster.close()


# ----------------------------------------------------------------- golden manifests

GOLDEN = __import__("pathlib").Path(__file__).parent / "golden"


def _golden_copy(tmp_path):
    import shutil
    out = tmp_path / "golden"
    shutil.copytree(GOLDEN, out)
    return out


def _edit_manifest(directory, edit):
    import json
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True, allow_nan=True))


def _case(manifest, name):
    return next(c for c in manifest["cases"] if c["name"] == name)


@pytest.mark.parametrize("tol", ["rtol", "atol"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1.0])
def test_golden_refuses_unbounded_tolerances(tmp_path, tol, value):
    from adanns_ref import golden
    out = _golden_copy(tmp_path)
    _edit_manifest(out, lambda m: _case(m, "flat_l2_padding")["outputs"]["D"].update({tol: value}))
    with pytest.raises(golden.ManifestError, match=f"{tol} must be a finite number"):
        golden.load_manifest(out)
    assert golden.main(["--check", str(out)]) == 2


def test_golden_id_outputs_must_be_exact(tmp_path):
    from adanns_ref import golden
    out = _golden_copy(tmp_path)
    _edit_manifest(out, lambda m: _case(m, "flat_l2_padding")["outputs"]["I"].update(
        {"compare": "close", "rtol": 1e-3, "atol": 1e-3}))
    with pytest.raises(golden.ManifestError, match="must be compared 'exact'"):
        golden.load_manifest(out)


def test_golden_refuses_huge_case_parameters(tmp_path):
    from adanns_ref import golden
    out = _golden_copy(tmp_path)
    case = next(c["name"] for c in golden.load_manifest(GOLDEN)["cases"] if c["component"] == "kmeans")
    _edit_manifest(out, lambda m: _case(m, case)["params"]["kmeans"].update({"niter": 10**9}))
    with pytest.raises(golden.ManifestError, match=r"niter: must be finite with \|value\| <= 4096"):
        golden.load_manifest(out)


@pytest.mark.parametrize("kind", ["fifo", "symlink_zero", "symlink_file", "directory"])
def test_golden_check_reports_listed_files_that_are_not_regular(tmp_path, kind):
    import os
    from adanns_ref import golden
    out = _golden_copy(tmp_path)
    target = out / "flat_ip.npz"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink_zero":
        target.symlink_to("/dev/zero")
    elif kind == "symlink_file":
        target.symlink_to(GOLDEN / "flat_ip.npz")  # right bytes, but outside the directory
    else:
        target.mkdir()
    report = golden.check(out)  # returns: never blocks on the FIFO nor reads /dev/zero
    assert any("not a regular file" in p for p in report["flat_ip"]), report["flat_ip"]
    assert golden.main(["--check", str(out)]) == 1


# ----------------------------------------------------------------- messages

def test_hnsw_load_names_the_file_for_bad_parameters(tmp_path):
    from adanns_ref.core.persist import save_npz
    index = HNSWIndex(8, M=4)
    index.add(_x(20, 8))
    index.save(tmp_path / "h.npz")
    from adanns_ref.core.persist import load_npz
    params, arrays = load_npz(tmp_path / "h.npz", "HNSWIndex", 1, {}, optional=(
        "data", "levels", "offsets", "neighbors", "rng_key", "state"))
    save_npz(tmp_path / "bad.npz", "HNSWIndex", 1, dict(params, M=1), arrays)
    with pytest.raises(ValueError, match=str(tmp_path / "bad.npz")):
        HNSWIndex.load(tmp_path / "bad.npz")


def test_corrupt_cached_tune_embeddings_say_delete_the_file(tmp_path):
    from adanns_ref.core.persist import save_npz
    from adanns_ref.tune import data
    bad = np.full((10, 64), np.nan, np.float32)
    save_npz(tmp_path / "embedded_mrl.npz", "TuneEmbeddings", 1, {}, {"base": bad, "queries": bad})
    with pytest.raises(ValueError, match="delete that file"):
        data.embedded_mrl(str(tmp_path))


def test_ctrl_c_in_the_golden_and_conformance_clis_exits_130_without_traceback(monkeypatch, capsys):
    from adanns_ref import golden
    from adanns_ref.conformance import cli
    from adanns_ref.golden import store

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(store, "check", interrupted)
    assert golden.main(["--check", "anywhere"]) == 130
    monkeypatch.setattr(cli, "run", interrupted)
    assert cli.main(["--quick", "--only", "flat"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_conformance_json_to_a_directory_is_a_usage_error_before_any_work(tmp_path, monkeypatch):
    from adanns_ref.conformance import cli
    monkeypatch.setattr(cli, "run", lambda cases: pytest.fail("the checks ran before the path check"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--json", str(tmp_path)])
    assert exc.value.code == 2


def test_sqindex_huge_d_is_a_clear_value_error():
    for make in (lambda: SQIndex(2**62, "fp16"), lambda: SQIndex(2**62, "8bit")):
        with pytest.raises(ValueError, match="d must be <="):
            make()


# ----------------------------------------------------------------- SQ documentation

@pytest.mark.parametrize("d", [8, 24])
def test_sq_4bit_uniform_l2_at_d_mod_16_eq_8_is_documented_and_within_rounding(d):
    faiss = pytest.importorskip("faiss")
    from adanns_ref.indices import sqindex
    rng = np.random.default_rng(d)
    x, q = rng.standard_normal((2000, d), dtype=np.float32), rng.standard_normal((50, d), dtype=np.float32)
    ours = SQIndex(d, "4bit_uniform")
    ours.train(x)
    ours.add(x)
    ref = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_4bit_uniform)
    ref.train(x)
    ref.add(x)
    (D, I), (Df, If) = ours.search(q, 10), ref.search(q, 10)
    assert np.array_equal(I, If)
    np.testing.assert_allclose(D, Df, rtol=0, atol=1e-6 * np.abs(Df).max())
    if not np.array_equal(D, Df):  # then the docs must not claim bit-identity for this case
        assert '"4bit_uniform" with metric "l2" at d % 16 == 8' in " ".join(sqindex.__doc__.split())


def test_sq_fp16_overflow_rows_are_never_returned_as_in_faiss_and_documented():
    faiss = pytest.importorskip("faiss")
    from adanns_ref.indices import sqindex
    x = _x(100, 8)
    x[3, 0] = 1e6  # beyond float16's 65504: stored as inf
    ours = SQIndex(8, "fp16")
    ours.train(x)
    ours.add(x)
    ref = faiss.IndexScalarQuantizer(8, faiss.ScalarQuantizer.QT_fp16)
    ref.train(x)
    ref.add(x)
    (_, I), (_, If) = ours.search(x[:5], 100), ref.search(x[:5], 100)
    assert 3 not in I and 3 not in If and np.array_equal(I, If)
    assert "fp16 overflow" in sqindex.__doc__


# ----------------------------------------------------------------- training's thread policy

def _cpu_ticks_per_thread():
    import os
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(t)] = int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
        except OSError:
            continue
    return out


def test_mrl_training_runs_on_one_thread(monkeypatch):
    """Issue 26 item 24: a training step must not spread over cores (BLAS pool, numba prange,
    OpenMP). Checked without timing: during every step threadpoolctl reports one BLAS thread,
    and over a whole run only the calling thread accumulates CPU time."""
    import sys
    import threading
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/task")
    from mrl_ref import train
    seen = []
    loss = train.matryoshka_ce_loss

    def spy(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpoolctl.threadpool_info()
                        if i["user_api"] == "blas"))
        return loss(*args, **kwargs)
    monkeypatch.setattr(train, "matryoshka_ce_loss", spy)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2048, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2048)
    kwargs = dict(hidden=(256, 256), epochs=2, batch_size=256, seed=0, progress=False)
    train.train_mrl(X, y, [8, 16, 64], **kwargs)  # warm-up: BLAS and allocator threads start
    before = _cpu_ticks_per_thread()
    train.train_mrl(X, y, [8, 16, 64], **kwargs)
    after = _cpu_ticks_per_thread()
    assert seen and max(seen) == 1, f"BLAS threads during a step: {sorted(set(seen))}"
    me = threading.get_native_id()
    others = {t: after[t] - before.get(t, 0) for t in after if t != me}
    mine = after[me] - before[me]
    assert mine > 0
    # a second BLAS / numba / OpenMP worker would take about as much CPU as this thread; the
    # few ticks allowed cover unrelated service threads of the test process (e.g. Dask's loop)
    assert sum(others.values()) <= 0.1 * mine + 2, f"other threads used CPU: {others}, this one {mine}"
