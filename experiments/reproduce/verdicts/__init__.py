"""How the reproduction's verdicts are computed, from the rows the experiments measured.

    claims.py    the papers' claims, declared as data (rule, deciding metric, minimum effect or
                 margin), and `judge_claim` / `all_claims` / `changes`
    rules.py     the rules: hierarchical seed-level intervals, three-outcome "beats",
                 "matches", "no_worse", per-point verdicts, controls, wall-clock ratio intervals
    evidence.py  reading rows into paired per-query outcomes: cross-fitting, recall references
    readers.py   one evidence reader per claim
    grids.py     grid holes (a comparison not measured over the same knob ranges)
"""
