"""Data for the target checks, and the paste-able reproducer scripts they print.

`TargetData` holds a database xb (n, D) float32, queries xq (nq, D) float32 and `code`: NumPy
source that rebuilds exactly these arrays, so a reproducer needs nothing but numpy and the
library. `seeded` draws Gaussian blobs with duplicated rows (distance ties) and exact zeros (the
binarisation threshold); `from_file` reads xb / xq from an .npz the reproducer loads too.
"""
from dataclasses import dataclass

import numpy as np

SEEDED = """rng = np.random.default_rng({seed})
centres = 3.0 * rng.standard_normal((12, {d}))
xb = (centres[rng.integers(0, 12, {n})] + rng.standard_normal(({n}, {d}))).astype(np.float32)
xb[rng.random(xb.shape) < {zeros}] = 0            # exact zeros: the binarisation threshold
xb[{n} - {dup}:] = xb[:{dup}]                     # duplicated rows: distance ties
xq = (1.2 * centres[rng.integers(0, 12, {nq})] + rng.standard_normal(({nq}, {d}))).astype(np.float32)
"""


@dataclass(frozen=True)
class TargetData:
    """Data of one run.

    name: str, shown in the report
    xb: (n, D) float32, the database (and the rows quantized, binarised, truncated)
    xq: (nq, D) float32, the queries
    code: str, NumPy source defining xb and xq (used verbatim in reproducers)
    """
    name: str
    xb: np.ndarray
    xq: np.ndarray
    code: str


def seeded(seed=0, n=2000, nq=100, d=32, dup=100, zeros=0.05):
    """Gaussian blobs: 12 centres, `dup` duplicated rows, a fraction `zeros` of exact zeros;
    queries from 1.2x the centres (some values outside the database's per-dim range)."""
    code = SEEDED.format(seed=seed, n=n, nq=nq, d=d, dup=dup, zeros=zeros)
    scope = {"np": np}
    exec(code, scope)  # the same source the reproducer prints, so both see the same arrays
    return TargetData(f"seeded(seed={seed}, n={n}, nq={nq}, d={d})", scope["xb"], scope["xq"], code)


def from_file(name, path):
    """xb / xq from an .npz at `path` (written by `save`)."""
    code = f"data = np.load({str(path)!r})\nxb, xq = data['xb'], data['xq']\n"
    with np.load(path) as f:
        return TargetData(name, np.ascontiguousarray(f["xb"], np.float32),
                          np.ascontiguousarray(f["xq"], np.float32), code)


def save(path, xb, xq):
    np.savez(path, xb=np.asarray(xb, np.float32), xq=np.asarray(xq, np.float32))


def literal(name, a):
    """Source defining `name` as the float32 / integer array `a` (values round-trip exactly)."""
    a = np.asarray(a)
    dtype = "np.float32" if a.dtype.kind == "f" else f"np.{a.dtype.name}"
    rows = ",\n    ".join("[" + ", ".join(repr(float(v)) if a.dtype.kind == "f" else str(int(v))
                                          for v in row) + "]" for row in a.reshape(len(a), -1))
    return f"{name} = np.array([\n    {rows}], dtype={dtype})\n"


def call_source(target, method, params=None, **more):
    """Source running `method` with the library alone (the target's snippet), or through the
    target class when it has none. `params` (a dict) and `more` name the arguments: source
    text for array variables (xb, x, q, codes, calibration), values otherwise."""
    params = {**(params or {}), **more}
    code = target.snippet(method, **params)
    if code is not None:
        return code
    cls = type(target)
    args = ", ".join(f"{k}={v}" if k in ("xb", "x", "q", "codes", "calibration") else f"{k}={v!r}"
                     for k, v in params.items())
    out = {"search": "D, I = ", "pq_encode": "codes = ", "pq_adc": "adc = ", "quantize": "got = ",
           "truncate": "got = ", "binarize": "got = ", "levels": "levels = ",
           "pq_codebooks": "codebooks = ", "pq_rotation": "R = "}.get(method, "")
    return (f"from {cls.__module__} import {cls.__name__}\n"
            f"t = t if 't' in dir() else {cls.__name__}()\n{out}t.{method}({args})\n")


def imports(target):
    code = getattr(target, "imports", "")
    return "import numpy as np\n" + code


def script(target, *parts):
    """A reproducer: the imports, then each part (source strings) in order."""
    return imports(target) + "".join(parts)
