"""Conformance suite: every component of adanns_ref checked against faiss over a grid of cases.

    python -m adanns_ref.conformance [--quick] [--only COMPONENT ...] [--json PATH]

prints a table (component | case | check | result | max deviation) and a JSON summary (to
stdout, or atomically to PATH) and exits 1 if any check fails. ``--quick`` runs the grid
``tests/conformance`` runs under pytest; the default runs the full grid (about a minute on two
cores). Both call the same functions, so a pytest failure and a CLI failure are the same fact.

Each ``check_<component>(case, **params)`` builds the faiss counterpart of one case and returns
one `Result` per check. Data are seeded Gaussian blobs (no k-means near-ties, so bit-exact checks
are meaningful) with odd and non-power-of-two dims, optional duplicated rows (distance ties) and,
for IVF, centroids far from the data (empty lists, k > the probed list sizes). Comparisons use
`adanns_ref.testing` (ties as sets; ids exactly, distances rtol 1e-5, or bit for bit where the
module documents faiss-identical floats; where a BLAS form cancels, an absolute tolerance of 1e-6
times the squared norms involved). Deviation = max |ours - faiss| over the compared values (for
codes: over the code bytes); JSON writes an infinite deviation (shape mismatch) as null.

Components: kmeans (exact path bit for bit; GEMM path n * d >= 128000 to rounding), flat, ivf
(faiss training, lists, search at several nprobe; the bridge), adanns_ivf (d_c != d_s via
``ivf_tools.search_preassigned``), pq (codebooks, codes, ADC tables and search, nbits 4 and 8),
opq (rotation trained from the same start A), ivfpq, metrics (k-recall@N against faiss's
intersection count; label metrics against a per-query loop, faiss has none), sq (ranges, codes,
decode, search bit for bit), binary_flat and binary_ivf (Hamming results identical, ties
included; `checks_codes`).

Any other implementation: subclass `Target` (`target.py`: one method per capability, claims per
check) and run ``python -m adanns_ref.conformance --target module:Class`` or ``--target NAME``
(built-in adapters in `adapters/`); `target_checks` holds the checks and their oracles,
`verdicts` the ladder identical > equal up to ties > equivalent only in recall > mismatch,
`target_data` the seeded data and the reproducer scripts, `target_run` claims and statuses.
"""
from .checks import CHECKS
from .cli import format_table, main, summary
from .compare import Result
from .grid import Case, grid, run, run_case
from .target import Target, capabilities, load_target
from .target_run import run_target

__all__ = ["CHECKS", "Case", "Result", "Target", "capabilities", "format_table", "grid", "load_target", "main",
           "run", "run_case", "run_target", "summary"]
