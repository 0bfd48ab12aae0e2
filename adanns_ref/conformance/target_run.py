"""Run a target through its checks and judge each result against the target's claims.

Status of one check:
- "as claimed": the verdict is at least the claimed one;
- "documented deviation": short of the claim (or unclaimed and not identical) and the target's
  `documented` explains it as the library's documented behaviour;
- "FINDING": short of the claim and not documented (the command exits 1);
- "not claimed": no claim and nothing documented (reported only).
"""
import importlib.metadata

from .target import LABELS, meets
from .target_checks import run_checks


def claim_of(target, check):
    """The target's claim for `check` (its "*" entry, if any, covers unnamed checks)."""
    return target.claims.get(check, target.claims.get("*"))


def status(target, result):
    claim = claim_of(target, result.check)
    if claim is not None and meets(result.verdict, claim):
        return "as claimed"
    if result.check in target.documented:
        return "documented deviation"
    return "FINDING" if claim is not None else "not claimed"


def label(result):
    text = LABELS[result.verdict]
    return text.replace("recall", result.equivalent_in) if result.verdict == "recall" else text


def library_version(target):
    if target.library is None:
        return None
    try:
        return importlib.metadata.version(target.library)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_target(target, data):
    """[(TargetResult, status)] of every applicable check."""
    return [(r, status(target, r)) for r in run_checks(target, data)]


def failed(target, rows):
    """The rows whose status fails the run (claimed and short, not documented)."""
    return [r for r, s in rows if s == "FINDING"]


def claim_text(target, check):
    claim = claim_of(target, check)
    return LABELS[claim] if claim else "-"


def table_lines(target, rows):
    """Text table: check | claim | verdict | status | deviation."""
    out = [("check", "claim", "verdict", "status", "deviation")]
    out += [(r.check, claim_text(target, r.check), label(r), s, r.deviation) for r, s in rows]
    widths = [max(len(row[i]) for row in out) for i in range(4)]
    lines = [" | ".join([c.ljust(w) for c, w in zip(row[:4], widths)] + [row[4]]) for row in out]
    lines.insert(1, "-+-".join("-" * w for w in widths) + "-+-" + "-" * 9)
    return lines


def _cell(text):
    return text.replace("|", "\\|")


def markdown(target, rows):
    """A markdown table, then each finding / documented deviation with its reproducer."""
    version = library_version(target)
    lines = [f"### {target.name}" + (f" ({target.library} {version})" if version else ""), "",
             "| check | claim | verdict | status | deviation |", "|---|---|---|---|---|"]
    lines += [f"| {r.check} | {claim_text(target, r.check)} | {label(r)} | {s} | {_cell(r.deviation)} |"
              for r, s in rows]
    for r, s in rows:
        if s in ("FINDING", "documented deviation") or (s == "not claimed" and r.verdict != "identical"):
            lines += ["", f"**{s}: {r.check}**" + (f" ({target.library} {version})" if version else "")]
            if r.check in target.documented:
                lines += ["", target.documented[r.check]]
            if r.reproducer:
                lines += ["", "```python", r.reproducer.rstrip(), "```"]
    return lines
