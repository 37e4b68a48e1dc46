"""pyproject.toml ships what the installed package reads at run time: the C++ kernel sources it compiles on first
use and the server's static files; the checked-in pins and the package's version agree with it."""
import glob
import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# how a kernel module names the C++ file beside it (lman_ms/models/layer_norm_kernel.py and the others)
SOURCE_LINE = re.compile(r'SOURCE = os\.path\.join\(os\.path\.dirname\(os\.path\.abspath\(__file__\)\), "([^"]+)"\)')


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _shipped_data() -> set:
    """Package files matched by the package-data globs, as setuptools (>= 62.3, recursive '**') expands them."""
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["lman_ms"]
    base = os.path.join(ROOT, "lman_ms")
    return {os.path.relpath(p, base) for pat in patterns for p in glob.glob(os.path.join(base, pat), recursive=True)
            if os.path.isfile(p)}


def test_kernel_sources_are_package_data():
    sources = {os.path.relpath(p, os.path.join(ROOT, "lman_ms"))
               for p in glob.glob(os.path.join(ROOT, "lman_ms", "**", "*.cc"), recursive=True)}
    assert sources, "no kernel sources found"
    assert sources <= _shipped_data()


def test_every_kernel_module_compiles_a_shipped_source():
    """Each module naming a SOURCE beside it (``os.path.dirname(__file__)``) names a shipped file."""
    shipped, seen = _shipped_data(), 0
    for path in glob.glob(os.path.join(ROOT, "lman_ms", "**", "*.py"), recursive=True):
        with open(path) as f:
            for name in SOURCE_LINE.findall(f.read()):
                rel = os.path.relpath(os.path.join(os.path.dirname(path), name), os.path.join(ROOT, "lman_ms"))
                assert rel in shipped, f"{path}: SOURCE {name} is not in pyproject's package-data"
                seen += 1
    assert seen >= 3    # layer norm, AdamW, decode kernels


def test_static_files_of_the_server_are_package_data():
    static = {os.path.relpath(p, os.path.join(ROOT, "lman_ms"))
              for p in glob.glob(os.path.join(ROOT, "lman_ms", "serve", "static", "**", "*"), recursive=True)
              if os.path.isfile(p)}
    assert static <= _shipped_data()


def test_every_package_is_found():
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["lman_ms", "lman_ms.*"]
    for folder, _, files in os.walk(os.path.join(ROOT, "lman_ms")):
        if any(f.endswith(".py") for f in files) and "__pycache__" not in folder:
            assert "__init__.py" in files, f"{folder}: a folder of modules without __init__.py is not installed"


def test_dependencies_name_the_pinned_runtime_set():
    """Every runtime dependency of pyproject has a line in requirements.txt (where it is pinned or bounded)."""
    def name(req):
        return re.split(r"[<>=!~;\[ ]", req, 1)[0].strip().lower().replace("_", "-")
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        pinned = {name(line) for line in f if line.strip() and not line.startswith("#")}
    assert {name(d) for d in _pyproject()["project"]["dependencies"]} <= pinned


def test_version_is_read_from_the_package():
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lman_ms.__version__"}
    import lman_ms
    assert re.fullmatch(r"\d+\.\d+\.\d+", lman_ms.__version__)
