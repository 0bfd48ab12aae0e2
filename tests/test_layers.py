"""The package's architecture, checked from the source alone (AST only: nothing is imported, so
this runs in milliseconds).

adanns_ref is layered bottom-up (LAYERS). Rules, each shown to fail on a planted violation below:
- no import cycle between modules (imports inside functions count too: a lazy import only
  hides a cycle);
- no upward import: a module imports only from its own layer or lower ones;
- no module-level ``__getattr__`` (a forwarder hides where a name lives), except the documented
  deprecation table of ``adanns_ref/__init__.py`` (ALLOWED_GETATTR), removed in 0.3;
- no import of an underscore name (or from an underscore module) of another module: a leading
  underscore means private to its module;
- no folder over MAX_MODULES modules, no module over MAX_LINES lines.
mrl_ref and experiments import only public adanns_ref paths (no underscore module or name, no
name deprecated at the top level); mrl_ref/autograd.py imports nothing from adanns_ref.

Adding a subpackage is one line in LAYERS.
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_MODULES = 12  # .py files per folder; __init__.py and __main__.py (entry points) not counted
MAX_LINES = 420

# top-level entry of adanns_ref (subpackage or module) -> layer; lower layers never import higher
LAYERS = {
    "core": 0,
    "io": 1,
    "distributed": 2,
    "search": 3,
    "quantizers": 4,
    "indices": 5,
    "rabitq": 5,
    "fastscan": 5,
    "funnel": 6,
    "panorama": 6,
    "faiss_bridge": 7,
    "evaluation": 8,
    "testing": 8,
    "golden": 9,
    "conformance": 9,
    "tune": 9,
}
TOP = 10  # adanns_ref/__init__.py: re-exports from every layer
# The one module-level __getattr__ allowed: the top level's deprecation of names that left it
# (PEP 562), forwarding to public paths only, until version 0.3.
ALLOWED_GETATTR = {"adanns_ref/__init__.py": (0, 3)}


# ----------------------------------------------------------------------- the checker

def modules(root, package):
    """{dotted name: path} of every .py file under root/package."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def _imports(name, path):
    """[(line, imported module, [names])] of every import in the file, relative ones resolved."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_pkg = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out, tree


def _private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def graph(mods):
    """{module: {imported module: first line}} over the modules in mods, plus the raw imports."""
    edges, raw = {}, {}
    for name, path in mods.items():
        imports, tree = _imports(name, path)
        raw[name] = (imports, tree)
        out = edges.setdefault(name, {})
        for line, target, names in imports:
            if target in mods or any(target.startswith(m + ".") for m in mods):
                hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
                for dst in hits or [target if target in mods else target.rsplit(".", 1)[0]]:
                    if dst != name:
                        out.setdefault(dst, line)
    return edges, raw


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def layer_of(module, package, layers):
    parts = module.split(".")
    if len(parts) == 1:
        return TOP
    return layers.get(parts[1])


def check_package(root, package, layers, allowed_getattr=(), version=(0, 0)):
    """Every violation of the rules in the module docstring, as readable strings."""
    mods = modules(root, package)
    edges, raw = graph(mods)
    problems = [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    for name in sorted(mods):
        rel = os.path.relpath(mods[name], root).replace(os.sep, "/")
        src_layer = layer_of(name, package, layers)
        if src_layer is None:
            problems.append(f"{rel}: {name.split('.')[1]!r} is not in the layer map; add one line to LAYERS")
            continue
        for dst, line in sorted(edges[name].items()):
            dst_layer = layer_of(dst, package, layers)
            if dst_layer is not None and dst_layer > src_layer:
                problems.append(f"{rel}:{line}: upward import of {dst} (layer {dst_layer}) from layer {src_layer}")
        imports, tree = raw[name]
        for line, target, names in imports:
            if not (target == package or target.startswith(package + ".")):
                continue
            bad = [p for p in target.split(".") if _private(p)] + [n for n in names if _private(n)]
            if bad:
                problems.append(f"{rel}:{line}: imports private {', '.join(bad)} from {target}; make it public "
                                f"where it is defined")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                until = dict(allowed_getattr).get(rel)
                if until is None or version >= until:
                    problems.append(f"{rel}:{node.lineno}: module-level __getattr__ (a forwarder)")
        n_lines = len(open(mods[name], encoding="utf-8").read().splitlines())
        if n_lines > MAX_LINES:
            problems.append(f"{rel}: {n_lines} lines (at most {MAX_LINES})")
    problems.extend(check_folders(os.path.join(root, package), root))
    return problems


def check_folders(top, root):
    problems = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        n = sum(f.endswith(".py") and f not in ("__init__.py", "__main__.py") for f in filenames)
        if n > MAX_MODULES:
            problems.append(f"{os.path.relpath(dirpath, root)}/: {n} modules (at most {MAX_MODULES})")
    return problems


def check_clients(root, package, library, moved=()):
    """Violations in a package that uses `library` (mrl_ref, experiments): private paths or names
    of the library, top-level names that moved, module-level __getattr__, sizes."""
    problems = []
    for name, path in sorted(modules(root, package).items()):
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        imports, tree = _imports(name, path)
        for line, target, names in imports:
            if target == library or target.startswith(library + "."):
                bad = [p for p in target.split(".") if _private(p)] + [n for n in names if _private(n)]
                if bad:
                    problems.append(f"{rel}:{line}: imports private {', '.join(bad)} from {target}")
                gone = [n for n in names if target == library and n in moved]
                if gone:
                    problems.append(f"{rel}:{line}: {', '.join(gone)} left the top level of {library}")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                problems.append(f"{rel}:{node.lineno}: module-level __getattr__ (a forwarder)")
        n_lines = len(open(path, encoding="utf-8").read().splitlines())
        if n_lines > MAX_LINES:
            problems.append(f"{rel}: {n_lines} lines (at most {MAX_LINES})")
    return problems + check_folders(os.path.join(root, package), root)


def _version():
    text = open(os.path.join(ROOT, "adanns_ref", "__init__.py"), encoding="utf-8").read()
    return tuple(int(v) for v in re.search(r'__version__ = "(\d+)\.(\d+)', text).groups())


def _moved():
    tree = ast.parse(open(os.path.join(ROOT, "adanns_ref", "__init__.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MOVED":
            return set(ast.literal_eval(node.value))
    return set()


# ----------------------------------------------------------------------- the repository

def test_adanns_ref_follows_the_rules():
    assert check_package(ROOT, "adanns_ref", LAYERS, ALLOWED_GETATTR, _version()) == []


@pytest.mark.parametrize("package", ["mrl_ref", "experiments"])
def test_clients_import_public_paths_only(package):
    assert check_clients(ROOT, package, "adanns_ref", _moved()) == []


def test_autograd_stands_alone():
    imports, _ = _imports("mrl_ref.autograd", os.path.join(ROOT, "mrl_ref", "autograd.py"))
    assert [t for _, t, _ in imports if t.split(".")[0] in ("adanns_ref", "mrl_ref")] == []


def test_layer_map_names_every_entry():
    entries = {os.path.splitext(e)[0] for e in os.listdir(os.path.join(ROOT, "adanns_ref"))
               if e != "__init__.py" and e != "__pycache__"}
    assert entries - set(LAYERS) == set()


# ----------------------------------------------------------------------- planted violations

def _plant(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


FAKE_LAYERS = {"low": 0, "high": 1}
CLEAN = {"pkg/__init__.py": "from .high.b import g\n", "pkg/low/__init__.py": "",
         "pkg/low/a.py": "def f():\n    return 1\n", "pkg/high/__init__.py": "",
         "pkg/high/b.py": "from ..low.a import f\n\ndef g():\n    return f()\n"}


def _check(tmp_path, changes, **kw):
    return check_package(_plant(tmp_path, {**CLEAN, **changes}), "pkg", FAKE_LAYERS, **kw)


def test_clean_fake_package_passes(tmp_path):
    assert _check(tmp_path, {}) == []


def test_planted_cycle_fails(tmp_path):
    problems = _check(tmp_path, {"pkg/low/a.py": "def f():\n    from .c import h\n    return h()\n",
                                 "pkg/low/c.py": "from .a import f\n\ndef h():\n    return 1\n"})
    assert problems == ["import cycle: pkg.low.a -> pkg.low.c"]


def test_planted_upward_import_fails(tmp_path):
    problems = _check(tmp_path, {"pkg/low/a.py": "def f():\n    from ..high import c\n    return 1\n",
                                 "pkg/high/c.py": ""})
    assert problems == ["pkg/low/a.py:2: upward import of pkg.high.c (layer 1) from layer 0"]


def test_planted_getattr_forwarder_fails(tmp_path):
    forwarder = "def __getattr__(name):\n    raise AttributeError(name)\n"
    assert _check(tmp_path, {"pkg/low/a.py": forwarder}) == [
        "pkg/low/a.py:1: module-level __getattr__ (a forwarder)"]
    allowed = {"pkg/__init__.py": (0, 3)}  # the documented exception, and its expiry
    top = {"pkg/__init__.py": "from .high.b import g\n\n" + forwarder}
    assert _check(tmp_path, top, allowed_getattr=allowed, version=(0, 2)) == []
    assert len(_check(tmp_path, top, allowed_getattr=allowed, version=(0, 3))) == 1


def test_planted_private_import_fails(tmp_path):
    problems = _check(tmp_path, {"pkg/low/a.py": "def _f():\n    return 1\n",
                                 "pkg/high/b.py": "from ..low.a import _f\n\ndef g():\n    return _f()\n",
                                 "pkg/high/c.py": "from ..low import _hidden\n",
                                 "pkg/low/_hidden.py": ""})
    assert len(problems) == 2 and all("imports private" in p for p in problems)


def test_planted_big_folder_and_module_fail(tmp_path):
    many = {f"pkg/low/m{i}.py": "" for i in range(MAX_MODULES)}  # a.py makes it MAX_MODULES + 1
    assert _check(tmp_path / "many", many) == [f"pkg/low/: {MAX_MODULES + 1} modules (at most {MAX_MODULES})"]
    long = {"pkg/low/a.py": "def f():\n    return 1\n" + "#\n" * MAX_LINES}
    assert _check(tmp_path / "long", long) == [f"pkg/low/a.py: {MAX_LINES + 2} lines (at most {MAX_LINES})"]


def test_planted_unmapped_subpackage_fails(tmp_path):
    problems = _check(tmp_path, {"pkg/new/__init__.py": ""})
    assert problems == ["pkg/new/__init__.py: 'new' is not in the layer map; add one line to LAYERS"]


def test_planted_client_violations_fail(tmp_path):
    root = _plant(tmp_path, {**CLEAN, "app/__init__.py": "", "app/x.py": (
        "from pkg.low._hidden import y\nfrom pkg.low.a import _f\nfrom pkg import old\n"
        "def __getattr__(name):\n    raise AttributeError(name)\n")})
    problems = check_clients(root, "app", "pkg", moved={"old"})
    assert len(problems) == 4
