"""Cached, atomic pipeline stages for `python -m experiments.reproduce`.

A stage is a function ``compute(ctx) -> StageResult`` plus a JSON-able configuration. Its cache
key is

    hash = sha256(stage name, configuration, hashes of the stages it reads, code fingerprint)

where the code fingerprint is the SHA-256 of the source files of the modules the stage names and
of every first-party module they import, transitively (read from the imports, so a stage lists
only its entry points), so editing an algorithm invalidates exactly the stages that use it. Layout under the output
directory DIR:

    DIR/cache/<stage>/<table>.json    rows of each table, with "config_hash" inside
    DIR/cache/<stage>/arrays.npz      arrays (embeddings, result ids), `core.persist.save_npz`,
                                      "config_hash" in its params
    DIR/cache/<stage>/<extra files>   e.g. trained models written by the stage itself
    DIR/cache/<stage>/manifest.json   written last: hash, config, wall time, SHA-256 of every
                                      output file (including the CSVs and PNGs below)
    DIR/tables/<table>.csv            the same rows as plain CSV (covered by the manifest hash)
    DIR/figures/<name>.png            figures (config hash in the PNG "Comment" text chunk)

A stage is skipped ("cached" on stderr) when its manifest holds the same hash and every listed
file still exists with the recorded SHA-256; otherwise it is recomputed and every file is
rewritten atomically (`adanns_ref.core.persist.atomic_write*`), the manifest last, so an
interrupted run never leaves a manifest that vouches for half-written outputs.
"""
import ast
import csv
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
import sys
import time

import numpy as np

from adanns_ref.core.persist import atomic_write_text, load_npz, save_npz, sha256_file

ARRAYS_KIND = "ReproStageArrays"
ARRAYS_VERSION = 1
_ARRAY_NAME = re.compile(r"[A-Za-z0-9_]+")  # names of a stage's arrays (no "__" schema names)


TIMING_REPEATS = 5       # timed repeats of every seed's index (the minimum a preset may ask for)
TIMING_QUERIES = 1000    # queries of each timed repeat (the first ones of the test split)


def timing(cfg):
    """(repeats, queries) of the timed searches from the preset: cfg["timing_repeats"] (>= 5)
    and cfg["timing_queries"] (default TIMING_QUERIES)."""
    repeats = cfg.get("timing_repeats", TIMING_REPEATS)
    if repeats < TIMING_REPEATS:
        raise ValueError(f"timing_repeats must be >= {TIMING_REPEATS}, got {repeats}: fix the preset")
    return repeats, cfg.get("timing_queries", TIMING_QUERIES)


def timed_repeats(search, q, cfg, full=True):
    """(search(q), ms/query of each of the preset's timed repeats): one untimed call on every
    query first (the results, and the warm-up on this very index: kernels compiled, caches and
    pages filled), then `timing(cfg)` repeats on the first queries. full=False: the caller has
    already searched every query on this index (the warm-up), the first item is None. Times
    decide nothing (the claims choose by deterministic cost); they are reported with an
    interval over seeds."""
    repeats, nq = timing(cfg)
    out = search(q) if full else None
    sub = q[:nq]
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        search(sub)
        ms.append(1e3 * (time.perf_counter() - t0) / len(sub))
    return out, ms


def log(msg):
    print(f"[reproduce] {msg}", file=sys.stderr, flush=True)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


FIRST_PARTY = ("adanns_ref", "mrl_ref", "experiments")  # whose source a stage's results depend on


def code_fingerprint(modules, roots=FIRST_PARTY):
    """SHA-256 over the source files of `modules` (dotted names) and of every module of `roots`
    they import, transitively (`imported_modules`): moving a kernel to another module still
    invalidates the stages that call it. A missing module is an error."""
    h = hashlib.sha256()
    for name in imported_modules(modules, roots):
        h.update(name.encode())
        with open(_source(name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def imported_modules(modules, roots=FIRST_PARTY):
    """The sorted closure of `modules` under "imports" (read from the source, not executed),
    restricted to modules of the packages `roots`. Imports inside functions count; for
    ``from pkg import name`` the submodule pkg.name counts when it is one, else pkg itself.
    Parent packages' ``__init__`` are not added unless imported: they run on import, but only
    re-export."""
    seen, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _source(name)
        seen.add(name)
        is_pkg = os.path.basename(path) == "__init__.py"
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] in roots)
            elif isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                target = (".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
                          if node.level else node.module)
                if target.split(".")[0] not in roots:
                    continue
                subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
                todo.extend(subs if len(subs) == len(node.names) else subs + [target])
    return sorted(seen)


def _source(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ImportError(f"no Python source for module {name!r}")
    return spec.origin


def _is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a name inside a module, not a module
        return False


class StageResult:
    """What a stage produces: tables (name -> list of row dicts), arrays, extra files, info."""

    def __init__(self, tables=None, arrays=None, files=(), info=None):
        self.tables = dict(tables or {})
        self.arrays = dict(arrays or {})
        self.files = list(files)
        self.info = dict(info or {})


class StageContext:
    """Handed to compute(): where to write extra files and what the upstream stages produced."""

    def __init__(self, pipeline, name, config, inputs):
        self.pipeline = pipeline
        self.name = name
        self.config = config
        self.inputs = inputs  # dict dep name -> StageResult
        self.dir = os.path.join(pipeline.out, "cache", name)

    def path(self, filename):
        os.makedirs(self.dir, exist_ok=True)
        return os.path.join(self.dir, filename)


class Pipeline:
    """Runs stages in order, skipping those whose outputs are cached under the same hash."""

    def __init__(self, out, force=False):
        self.out = os.path.abspath(out)
        self.force = force
        self.results = {}   # stage name -> StageResult
        self.hashes = {}    # stage name -> config hash
        self.timings = {}   # stage name -> dict(wall_s=..., cached=bool)
        self.fresh = set()  # stages computed in this invocation by worker processes: not forced
        os.makedirs(self.out, exist_ok=True)

    def stage_hash(self, name, config, deps, code):
        key = {"stage": name, "config": config,
               "deps": {d: self.hashes[d] for d in sorted(deps)},
               "code": code_fingerprint(code)}
        return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:16]

    def run(self, name, config, compute, deps=(), code=()):
        """Return the StageResult of stage `name`, computing it only when not cached."""
        for d in deps:
            if d not in self.results:
                raise ValueError(f"stage {name!r} depends on {d!r}, which has not run yet")
        digest = self.stage_hash(name, config, deps, code)
        self.hashes[name] = digest
        stage_dir = os.path.join(self.out, "cache", name)
        manifest_path = os.path.join(stage_dir, "manifest.json")
        if not self.force or name in self.fresh:
            cached = self._load_cached(name, digest, manifest_path)
            if cached is not None:
                result, manifest = cached
                self.results[name] = result
                self.timings[name] = {"wall_s": manifest["wall_s"], "cached": name not in self.fresh,
                                      "worker": name in self.fresh}
                log(f"{name}: cached (hash {digest}, computed in {manifest['wall_s']:.1f} s)")
                return result
        log(f"{name}: running (hash {digest})")
        ctx = StageContext(self, name, config, {d: self.results[d] for d in deps})
        t0 = time.perf_counter()
        result = compute(ctx)
        wall = time.perf_counter() - t0
        files = self._write_outputs(ctx, digest, result)
        manifest = {"stage": name, "config_hash": digest, "config": config,
                    "deps": {d: self.hashes[d] for d in deps}, "wall_s": wall,
                    "tables": sorted(result.tables), "has_arrays": bool(result.arrays),
                    "info": result.info,
                    "files": {os.path.relpath(p, self.out): sha256_file(p) for p in files}}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True,
                                                    default=_json_default))
        self.results[name] = result
        self.timings[name] = {"wall_s": wall, "cached": False}
        log(f"{name}: done in {wall:.1f} s")
        return result

    def _write_outputs(self, ctx, digest, result):
        files = []
        for tname, rows in result.tables.items():
            payload = {"stage": ctx.name, "config_hash": digest, "rows": rows}
            jpath = ctx.path(f"{tname}.json")
            atomic_write_text(jpath, json.dumps(payload, indent=1, default=_json_default))
            cpath = os.path.join(self.out, "tables", f"{tname}.csv")
            atomic_write_text(cpath, rows_to_csv(rows))
            files += [jpath, cpath]
        if result.arrays:
            apath = ctx.path("arrays.npz")
            save_npz(apath, ARRAYS_KIND, ARRAYS_VERSION, {"config_hash": digest}, result.arrays)
            files.append(apath)
        for f in result.files:
            if not os.path.exists(f):
                raise ValueError(f"stage {ctx.name!r} declared output {f} but did not write it")
            files.append(f)
        return files

    def _load_cached(self, name, digest, manifest_path):
        """The cached StageResult and manifest, or None (recompute) when anything about the cache
        is missing, of the wrong shape, unreadable or modified: a cache never crashes a run."""
        if not os.path.exists(manifest_path):
            return None
        try:
            return self._read_cache(name, digest, manifest_path)
        except (OSError, ValueError, RecursionError) as exc:  # Unicode/JSON errors are ValueErrors
            log(f"{name}: unusable cache ({type(exc).__name__}: {str(exc)[:200]}), recomputing")
            return None

    def _read_cache(self, name, digest, manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict) or manifest.get("config_hash") != digest:
            return None
        files, tables = manifest.get("files"), manifest.get("tables")
        if not (isinstance(files, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
                and isinstance(tables, list) and all(isinstance(t, str) for t in tables)
                and isinstance(manifest.get("has_arrays"), bool)
                and isinstance(manifest.get("wall_s"), (int, float))
                and isinstance(manifest.get("info", {}), dict)):
            raise ValueError(f"{manifest_path}: manifest of the wrong shape")
        for rel, sha in files.items():
            p = os.path.join(self.out, rel)
            if not os.path.normpath(p).startswith(self.out + os.sep):
                raise ValueError(f"{manifest_path}: file {rel!r} lies outside {self.out}")
            if not os.path.isfile(p) or sha256_file(p) != sha:
                log(f"{name}: cached output {rel} missing or modified, recomputing")
                return None
        stage_dir = os.path.dirname(manifest_path)
        rows = {}
        for tname in tables:
            with open(os.path.join(stage_dir, f"{tname}.json"), encoding="utf-8") as f:
                payload = json.load(f)
            if not isinstance(payload, dict) or payload.get("config_hash") != digest:
                return None
            if not isinstance(payload.get("rows"), list):
                raise ValueError(f"{tname}.json: no list of rows")
            rows[tname] = payload["rows"]
        arrays = {}
        if manifest["has_arrays"]:
            params, arrays = load_npz(os.path.join(stage_dir, "arrays.npz"), ARRAYS_KIND,
                                      ARRAYS_VERSION, {}, extra=_ARRAY_NAME)
            if params.get("config_hash") != digest:
                return None
        files = [os.path.join(self.out, rel) for rel in files]
        return StageResult(rows, arrays, files, manifest.get("info")), manifest


def rows_to_csv(rows):
    """Rows (dicts) -> CSV text; columns in first-seen order, missing cells empty."""
    cols = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv_cell(r.get(c)) for c in cols})
    return buf.getvalue()


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple, dict)):
        return canonical_json(v)
    return v
