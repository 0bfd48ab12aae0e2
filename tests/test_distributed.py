"""adanns_ref.distributed: every client= path on a real LocalCluster (2 worker processes) gives
the bits of the in-process run; a worker killed in the middle of a k-means fit changes nothing."""
import os
import signal

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import adanns_ref as ar  # noqa: E402
from adanns_ref import distributed as dist
from adanns_ref.search.assign import NearestCentroids, gemm_block_rows, uses_gemm
from adanns_ref.search.knn import knn_search


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[: n // 2] *= np.float32(0.01)  # a dense core and a sparse halo: empty clusters to split
    return x


def _assert_same_kmeans(a, b):
    for name in ("centroids", "obj", "nsplit", "imbalance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_iter_ == b.n_iter_


def _assert_same(*pairs):
    for u, v in pairs:
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v)


def test_block_bounds_start_at_multiples_of_the_alignment():
    bounds = dist.block_bounds(10_000, 384, 32, 2)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10_000 and len(bounds) > 1
    assert all(i0 % 384 == 0 and i1 > i0 for i0, i1 in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert dist.block_bounds(0, 7, 4, 2) == []
    big = dist.block_bounds(1 << 20, 1, 256, 1)  # BLOCK_BYTES bounds a block's rows
    assert max(i1 - i0 for i0, i1 in big) * 256 * 4 <= dist.BLOCK_BYTES


@pytest.mark.parametrize("n, d, k, kw", [
    (3000, 16, 60, {}),                                  # direct path
    (12000, 24, 100, {}),                                # GEMM path, several blocks
    (12000, 24, 100, {"spherical": True}),               # GEMM path, inner product
])
def test_kmeans_is_bit_identical(client, n, d, k, kw):
    x = _data(n, d)
    assert uses_gemm(n, d) == (n * d >= 128000)
    if uses_gemm(n, d):  # the blocks really cut through the batch at GEMM block starts
        assert len(dist.block_bounds(n, gemm_block_rows(k), d, 2)) > 1
    a = ar.KMeans(k, niter=6, seed=5, **kw).fit(x)
    b = ar.KMeans(k, niter=6, seed=5, **kw).fit(x, client=client)
    if not kw:
        assert a.nsplit.sum() > 0, "the data must exercise empty-cluster splits"
    _assert_same_kmeans(a, b)


def test_kmeans_subsample_and_warm_start(client):
    x = _data(5000, 8, seed=1)
    kw = dict(niter=4, seed=2, max_points_per_centroid=40)  # 5000 > 40 * 50: subsampled
    warm = x[:7] + np.float32(0.5)
    a = ar.KMeans(50, **kw).fit(x, init_centroids=warm)
    b = ar.KMeans(50, **kw).fit(x, init_centroids=warm, client=client)
    assert a.n_train_ == 2000
    _assert_same_kmeans(a, b)


def test_client_must_be_a_distributed_client():
    with pytest.raises(TypeError, match="distributed.Client"):
        ar.KMeans(4).fit(_data(100, 4), client="tcp://127.0.0.1:8786")


@pytest.fixture(scope="module")
def ivf_data():
    return _data(9000, 32, seed=3)


@pytest.fixture(scope="module")
def ivf_pair(client, ivf_data):
    a = ar.IVFIndex(32, 64, d_c=16, d_s=24)
    a.train(ivf_data)
    a.add(ivf_data)
    b = ar.IVFIndex(32, 64, d_c=16, d_s=24)
    b.train(ivf_data, client=client)
    b.add(ivf_data, client=client)
    return a, b


def _assert_same_ivf(a, b):
    _assert_same((a.centroids, b.centroids), (a._ids, b._ids), (a._offsets, b._offsets),
                 (a._data, b._data))


def test_ivf_build_is_bit_identical(ivf_pair):
    _assert_same_ivf(*ivf_pair)


@pytest.mark.parametrize("source", ["fbin", "npy", "dask"])
def test_ivf_build_from_a_file_or_dask_array(client, ivf_data, ivf_pair, tmp_path, source):
    if source == "dask":
        x = da.from_array(ivf_data, chunks=(1000, 32))
    else:
        x = str(tmp_path / f"x.{source}")
        (ar.io.write_fbin if source == "fbin" else ar.io.write_npy)(x, ivf_data)
    c = ar.IVFIndex(32, 64, d_c=16, d_s=24)
    c.train(x, client=client)
    c.add(x, client=client)
    _assert_same_ivf(ivf_pair[0], c)


@pytest.mark.parametrize("nprobe", [1, 4])
@pytest.mark.parametrize("nq", [300, 9000])  # direct and GEMM routing
def test_ivf_search_is_bit_identical(client, ivf_data, ivf_pair, nprobe, nq):
    a, b = ivf_pair
    q = ivf_data[:nq] + np.float32(0.01)
    D1, I1 = a.search(q, 10, nprobe=nprobe, d_s=20)
    D2, I2 = b.search(q, 10, nprobe=nprobe, d_s=20, client=client)
    _assert_same((D1, D2), (I1, I2))
    assert a.last_search_flops == b.last_search_flops


def test_bad_file_is_reported(client, tmp_path):
    path = tmp_path / "x.fbin"
    ar.io.write_fbin(path, np.ones((10, 8), np.float32))
    with pytest.raises(ValueError, match="before training"):
        ar.IVFIndex(4, 2).add(str(path), client=client)
    index = ar.IVFIndex(4, 2)
    index.set_centroids(np.eye(2, 4, dtype=np.float32))
    with pytest.raises(ValueError, match=r"x\.fbin: shape \(10, 8\), expected \(n, 4\)"):
        index.add(str(path), client=client)


@pytest.mark.parametrize("M, nbits", [(4, 6), (2, 5)])  # dsub 8: direct form; dsub 16: BLAS tables
def test_pq_encode_is_bit_identical(client, ivf_data, M, nbits):
    pq = ar.ProductQuantizer(32, M, nbits).train(ivf_data)
    _assert_same((pq.encode(ivf_data), pq.encode(ivf_data, client=client)))


def test_ivfpq_build_and_search_are_bit_identical(client, ivf_data):
    a = ar.IVFPQIndex(32, 32, 4, nbits=5, d_c=16, d_s=32)
    a.train(ivf_data)
    a.add(ivf_data)
    b = ar.IVFPQIndex(32, 32, 4, nbits=5, d_c=16, d_s=32)
    b.train(ivf_data, client=client)
    b.add(ivf_data, client=client)
    _assert_same((a.centroids, b.centroids), (a.scoring_centroids, b.scoring_centroids),
                 (a.pq.codebooks, b.pq.codebooks), (a._codes, b._codes), (a._ids, b._ids))
    q = ivf_data[:500] + np.float32(0.01)
    _assert_same(*zip(a.search(q, 10, nprobe=4), b.search(q, 10, nprobe=4, client=client)))


def test_ivfpq_with_opq_refuses_a_client(client, ivf_data):
    index = ar.IVFPQIndex(32, 8, 4, nbits=4, opq=True, allow_small=True, opq_niter=1)
    index.train(ivf_data[:1000])
    with pytest.raises(ValueError, match="opq=True"):
        index.add(ivf_data[:100], client=client)


@pytest.mark.parametrize("metric, nq, k", [
    ("l2", 200, 10), ("ip", 200, 10),      # direct sums
    ("l2", 4000, 10), ("ip", 4000, 120),   # GEMM blocks (nq * d >= 128000); heaps, reservoirs
])
def test_ground_truth_is_bit_identical(client, ivf_data, metric, nq, k):
    q = _data(nq, 32, seed=4)
    xb = np.concatenate([ivf_data, ivf_data[:50]])  # duplicates: ties across database blocks
    _assert_same(*zip(knn_search(q, xb, k, metric), knn_search(q, xb, k, metric, client=client)))


@pytest.mark.parametrize("metric, nq", [("ip", 300), ("l2", 4000)])
def test_ground_truth_merges_block_groups_in_turn(client, ivf_data, monkeypatch, metric, nq):
    monkeypatch.setattr(dist, "BLOCK_BYTES", 1024 * 32 * 4)  # one DB_BLOCK per block: 9 blocks
    monkeypatch.setattr(dist, "MERGE_GROUP", 1)  # merged 2 at a time (2 worker threads)
    q = _data(nq, 32, seed=6)
    xb = np.concatenate([ivf_data[:4000], ivf_data[:4000], ivf_data[4000:5000]])  # ties
    assert len(dist.block_bounds(xb.shape[0], 1024, 32, 2)) == 9
    _assert_same(*zip(knn_search(q, xb, 20, metric), knn_search(q, xb, 20, metric, client=client)))


def test_ground_truth_pads_and_reads_files(client, tmp_path):
    xb = _data(5, 8)
    path = tmp_path / "xb.fbin"
    ar.io.write_fbin(path, xb)
    q = _data(3, 8, seed=9)
    _assert_same(*zip(knn_search(q, xb, 7, "ip"), knn_search(q, str(path), 7, "ip", client=client)))


def _sweep_point(config, x):
    """A module-level sweep task: k-means objective of one configuration."""
    k, seed = config
    return float(ar.KMeans(k, niter=3, seed=seed).fit(x).obj[-1])


def test_sweep_configurations_run_as_tasks_in_order(client):
    x = _data(2000, 8, seed=11)
    configs = [(k, seed) for k in (4, 16, 32) for seed in (1, 2)]
    assert dist.map_configs(client, _sweep_point, configs, x) == [_sweep_point(c, x) for c in configs]


@pytest.mark.parametrize("spec", ["local:0", "local:two", "local:"])
def test_connect_rejects_a_bad_local_spec(spec):
    with pytest.raises(ValueError, match="local:N"):
        dist.connect(spec)


def _worker_pids(client):
    return set(client.run(os.getpid).values())


def test_a_worker_killed_during_a_fit_changes_nothing(client, monkeypatch):
    """SIGKILL a worker process before the third iteration's tasks: its blocks and tasks are
    lost, Dask recomputes the blocks (they are tasks) and reruns the assignments elsewhere."""
    x = _data(12000, 24, seed=7)
    a = ar.KMeans(100, niter=6, seed=5).fit(x)
    assert a.nsplit.sum() > 0
    before = _worker_pids(client)
    calls = []
    original = NearestCentroids.__call__

    def killing_call(self, centroids):
        calls.append(1)
        if len(calls) == 3:
            os.kill(sorted(before)[0], signal.SIGKILL)
        return original(self, centroids)

    monkeypatch.setattr(NearestCentroids, "__call__", killing_call)
    b = ar.KMeans(100, niter=6, seed=5).fit(x, client=client)
    assert len(calls) == 6
    _assert_same_kmeans(a, b)
    client.wait_for_workers(2, timeout=120)
    assert _worker_pids(client) != before  # the nanny restarted the killed worker
