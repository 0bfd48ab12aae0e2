"""Built-in conformance targets (`python -m adanns_ref.conformance --target NAME`).

Each wraps one library installed from PyPI (the `targets` extra installs them) and states, in
its `claims`, what it is expected to match and, in `documented`, the deviations its own
documentation describes. `reference` is this package itself (every check identical).
"""
BUILTIN = {
    "reference": "adanns_ref.conformance.adapters.reference:ReferenceTarget",
    "hnswlib": "adanns_ref.conformance.adapters.hnswlib_target:HnswlibTarget",
    "usearch": "adanns_ref.conformance.adapters.usearch_target:UsearchF32",
    "usearch-f16": "adanns_ref.conformance.adapters.usearch_target:UsearchF16",
    "usearch-i8": "adanns_ref.conformance.adapters.usearch_target:UsearchI8",
    "usearch-b1": "adanns_ref.conformance.adapters.usearch_target:UsearchB1",
    "nanopq": "adanns_ref.conformance.adapters.nanopq_target:NanopqPQ",
    "nanopq-opq": "adanns_ref.conformance.adapters.nanopq_target:NanopqOPQ",
    "sentence-transformers": "adanns_ref.conformance.adapters.st_target:SentenceTransformersTarget",
    "sentence-transformers-normalize":
        "adanns_ref.conformance.adapters.st_target:SentenceTransformersNormalizeModule",
    "lancedb-ivfpq": "adanns_ref.conformance.adapters.lancedb_target:LanceIVFPQ",
    "lancedb-rabitq": "adanns_ref.conformance.adapters.lancedb_target:LanceRaBitQ",
    "lancedb-ivfpq-norefine": "adanns_ref.conformance.adapters.lancedb_target:LanceIVFPQNoRefine",
    "lancedb-rabitq-norefine": "adanns_ref.conformance.adapters.lancedb_target:LanceRaBitQNoRefine",
}
