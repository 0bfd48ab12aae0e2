"""The target protocol: test your own implementation (or a library) against this oracle.

Subclass `Target` and override the methods of the capabilities you have; a capability whose
methods are not overridden is skipped. Then

    python -m adanns_ref.conformance --target mymodule:MyTarget      (or --target NAME, built-in)

runs every applicable check (`target_checks.CHECKS`) and prints, per check, a verdict on the
ladder (best first)

    identical  >  equal up to ties  >  equivalent only in recall  >  mismatch

with the deviation and a paste-able reproducer (numpy + the library only). `claims` says, per
check, the verdict the target claims to reach (``"identical"``, ``"ties"`` or ``"recall"``); the
command exits 1 when a claimed check falls short. `documented` names checks whose shortfall is the
library's documented behaviour (a *documented deviation*, reported but not a failure); any other
shortfall of a claim is a *finding*.

Capabilities and their methods (arrays are NumPy; float inputs are float32 C-contiguous):

- flat: ``build_flat(xb, metric)`` then ``search(q, k)`` -> (D (nq, k) float32, I (nq, k) int64),
  faiss conventions: metric "l2" -> squared L2 ascending, "ip" -> inner product descending,
  "hamming" -> xb, q are packed uint8 codes (n, d / 8), D the Hamming distances ascending.
- hnsw: ``build_hnsw(xb, M, ef_construction, seed)`` then ``search(q, k, ef)``; optional
  ``levels()`` -> (n,) int64 top level of each point (checked against faiss's level law).
- pq: ``pq_train(x, M, nbits)``, ``pq_encode(x)`` -> (n, M) int64 sub-codes; optional
  ``pq_codebooks()`` -> (M, 2**nbits, d / M) float32 and ``pq_rotation()`` -> (d, d) float32 R
  (codes quantize x @ R, as OPQ), which turn the check into an exact one; optional
  ``pq_adc(q, codes)`` -> (nq, n) float32 asymmetric squared distances.
- quantize: ``quantize(x, precision, calibration)`` with precision in "int8", "uint8", "binary",
  "ubinary" (sentence-transformers' names), calibration None or (m, d) float32.
- truncate: ``truncate(x, d, normalize)`` -> (n, d) float32 Matryoshka prefix.
- binarize: ``binarize(x)`` -> (n, ceil(d / 8)) uint8, bit t of row i set for x[i, t] > 0,
  packed most significant bit first (numpy.packbits).

A target can also give ``snippet(method, **params)`` -> Python source calling the library (the
built-in adapters do), used in reproducers instead of instantiating the target class.
"""
import importlib

VERDICTS = ("identical", "ties", "recall", "mismatch")  # the ladder, best first
LABELS = {"identical": "identical", "ties": "equal up to ties",
          "recall": "equivalent only in recall", "mismatch": "mismatch"}
CAPABILITIES = {
    "flat": ("build_flat", "search"),
    "hnsw": ("build_hnsw", "search"),
    "pq": ("pq_train", "pq_encode"),
    "quantize": ("quantize",),
    "truncate": ("truncate",),
    "binarize": ("binarize",),
}
OPTIONAL = ("levels", "pq_codebooks", "pq_rotation", "pq_adc")


class Target:
    """Base class of a conformance target. Override the methods you implement.

    Class attributes:
    name: str, shown in the report
    library: str or None, the PyPI distribution whose version the report records
    claims: dict check name -> "identical" | "ties" | "recall", what the target claims to reach
        (key "*": the claim of every check not named)
    documented: dict check name -> str, why a shortfall is the library's documented behaviour
    metrics: tuple of str, the flat metrics it supports (of "l2", "ip", "hamming")
    precisions: tuple of str, the quantize precisions it supports
    """
    name = "target"
    library = None
    claims = {}
    documented = {}
    metrics = ("l2", "ip")
    precisions = ("int8", "uint8", "binary", "ubinary")

    def build_flat(self, xb, metric):
        raise NotImplementedError

    def build_hnsw(self, xb, M, ef_construction, seed):
        raise NotImplementedError

    def search(self, q, k, ef=None):
        raise NotImplementedError

    def levels(self):
        raise NotImplementedError

    def pq_train(self, x, M, nbits):
        raise NotImplementedError

    def pq_encode(self, x):
        raise NotImplementedError

    def pq_codebooks(self):
        raise NotImplementedError

    def pq_rotation(self):
        raise NotImplementedError

    def pq_adc(self, q, codes):
        raise NotImplementedError

    def quantize(self, x, precision, calibration):
        raise NotImplementedError

    def truncate(self, x, d, normalize):
        raise NotImplementedError

    def binarize(self, x):
        raise NotImplementedError

    def snippet(self, method, **params):
        """Python source that does what `method` does with the library alone, or None."""
        return None


def implements(target, method):
    """True if `target`'s class overrides `method` of `Target`."""
    return getattr(type(target), method, None) is not getattr(Target, method)


def capabilities(target):
    """The capabilities `target` implements (all methods of the capability overridden)."""
    return [cap for cap, methods in CAPABILITIES.items() if all(implements(target, m) for m in methods)]


def meets(verdict, claim):
    """True if `verdict` is at least as good as `claim` on the ladder."""
    return VERDICTS.index(verdict) <= VERDICTS.index(claim)


def load_target(spec):
    """A Target instance from "module:Class" or a built-in name (see `adapters.BUILTIN`)."""
    from .adapters import BUILTIN
    if spec in BUILTIN:
        spec = BUILTIN[spec]
    elif ":" not in spec:
        raise ValueError(f"--target {spec!r}: give module:Class or one of {sorted(BUILTIN)}")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--target {spec!r}: cannot import {module_name!r} ({exc}); install the "
                         f"library or run from the directory that holds the module") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f"--target {spec!r}: {module_name} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise ValueError(f"--target {spec!r}: {attr} is not a subclass of adanns_ref.conformance.Target")
    target = cls()
    bad = {c: v for c, v in target.claims.items() if v not in VERDICTS[:3]}
    if bad:
        raise ValueError(f"{type(target).__name__}.claims {bad}: each claim must be one of {VERDICTS[:3]}")
    return target
