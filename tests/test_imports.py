"""Imports have no side effects and run one way.

- Each public module imports in a fresh interpreter with a clean environment; nothing loads
  (or builds) the op library until it is used; importing writes no file and starts no
  process; only modules that bring in the network (TFRS) set one variable, the Keras 2
  switch TFRS needs.
- No module imports upward: cli -> service -> model -> ops -> core, and inside model
  evaluation -> training -> network -> data -> config, with the artifact reader on core and
  ops only (a static check of every import statement, function-local ones included).
- The server imports no training code: no TFRS, no trainer, no compare, no network.
"""

import ast
import json
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = {"steadyrank.core": "core", "steadyrank.ops": "ops",
            "steadyrank.model": "model", "steadyrank.service": "service",
            "steadyrank.cli": "cli", "steadyrank.proto": "proto"}
SKIP = {"steadyrank.cli.__main__"}  # runs the command


def modules_of(package: str, folder: Path) -> list[str]:
    """``package`` and every module and subpackage under ``folder`` (private ones too)."""
    names = [package]
    for info in pkgutil.walk_packages([str(folder)], prefix=f"{package}."):
        if "._generated" not in info.name:
            names.append(info.name)
    return names


def all_modules() -> list[str]:
    return sorted(m for package, folder in PACKAGES.items()
                  for m in modules_of(package, REPO / folder) if m not in SKIP)


def public_modules() -> list[str]:
    return [m for m in all_modules() if not m.rsplit(".", 1)[-1].startswith("_")
            or m.endswith("__init__")]


CHECK = """
import json, os, sys
writes, spawned = [], []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def audit(event, args):
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS):
            writes.append(str(path))
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
                   "os.symlink", "os.link", "shutil.copyfile", "shutil.rmtree"):
        writes.append(f"{event} {args[0]}")
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
        spawned.append(f"{event} {args[:2]}")
sys.addaudithook(audit)
before = dict(os.environ)
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
maps = open("/proc/self/maps").read()
changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k))
print(json.dumps({"library_loaded": "_smelu_ops.so" in maps, "env_changed": changed,
                  "network": "steadyrank.model.network" in sys.modules,
                  "writes": writes, "spawned": spawned, "modules": sorted(sys.modules)}))
"""


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "STEADYRANK_OPS_LIB_DIR", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if k in keep},
            "PYTHONDONTWRITEBYTECODE": "1"}


def _lasting(writes: list[str]) -> list[str]:
    """The writes that leave something behind: not a probe file created and removed within
    the import (TensorFlow checks its temporary folder so), not /dev/null."""
    removed = {w.split(" ", 1)[1] for w in writes if w.startswith("os.remove ")}
    return [w for w in writes if w != "/dev/null" and w not in removed
            and not (w.startswith("os.remove ") and w.split(" ", 1)[1] in removed)]


def _import(*modules: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHECK, *modules], capture_output=True,
                          text=True, env={**_clean_env(), **(env or {})}, timeout=300,
                          cwd=Path("/"))
    assert done.returncode == 0, f"{modules}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_public_module_imports_alone_without_side_effects():
    # What TensorFlow, Keras 2 and TFRS do at import (Keras writes ~/.keras/keras.json) is
    # not ours to judge.
    # TensorFlow without the Keras 2 switch imports Keras 3, which imports matplotlib.
    baselines = [_import("tensorflow"), _import("tensorflow", "tf_keras",
                                                "tensorflow_recommenders",
                                                env={"TF_USE_LEGACY_KERAS": "1"})]
    theirs_env = {k for b in baselines for k in b["env_changed"]}
    theirs_writes = {w for b in baselines for w in _lasting(b["writes"])}
    theirs_spawned = {p for b in baselines for p in b["spawned"]}
    modules = public_modules()
    assert {"steadyrank.model.network.layers", "steadyrank.service.serve.server",
            "steadyrank.core.fileio", "steadyrank.model.artifact.reader"} <= set(modules)
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(modules, pool.map(_import, modules), strict=True))
    for module, out in results.items():
        assert not out["library_loaded"], f"importing {module} loaded the op library"
        ours = {"TF_USE_LEGACY_KERAS"} if out["network"] else set()
        assert set(out["env_changed"]) <= ours | theirs_env, (module, out["env_changed"])
        assert set(_lasting(out["writes"])) <= theirs_writes, (module, out["writes"])
        assert set(out["spawned"]) <= theirs_spawned, (module, out["spawned"])


def test_the_server_imports_no_training_code():
    loaded = _import("steadyrank.service.serve.server",
                     "steadyrank.service.serve.supervisor")["modules"]
    training = [m for m in loaded if m.startswith((
        "tensorflow_recommenders", "tf_keras", "steadyrank.model.network",
        "steadyrank.model.training", "steadyrank.model.data",
        "steadyrank.model.evaluation", "steadyrank.model.publishing",
        "steadyrank.model.artifact.writer"))]
    assert training == []
    assert "steadyrank.model.artifact.reader" in loaded  # what it does use


def test_clients_import_neither_tensorflow_nor_training_code():
    loaded = _import("steadyrank.service.client", "steadyrank.service.client.probe")["modules"]
    assert not [m for m in loaded if m.startswith(("tensorflow", "steadyrank.model.network"))]


@pytest.mark.parametrize("use", ["import steadyrank.ops as o, tensorflow as tf; "
                                 "o.smelu(tf.constant([1.0]))",
                                 "from steadyrank.ops import load_library; load_library()"])
def test_the_library_loads_on_first_use(use):
    code = f"{use}\nprint('_smelu_ops.so' in open('/proc/self/maps').read())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_clean_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


# ------------------------------------------------------------------------ the layering

# For each package (the longest matching prefix wins), the steadyrank packages its modules
# may import. Imports inside a package itself are always allowed. Inside model the rooms go
# publishing -> evaluation -> training -> network -> data -> config, with measures a leaf
# every room may use and the artifact reader on core and ops only.
READER_SIDE = ("steadyrank.model.artifact.layout", "steadyrank.model.artifact.manifest",
               "steadyrank.model.artifact.reader", "steadyrank.model.artifact.gate",
               "steadyrank.model.schema")
BELOW_TRAINING = ("steadyrank.core", "steadyrank.ops", "steadyrank.model.config",
                  "steadyrank.model.schema", "steadyrank.model.data",
                  "steadyrank.model.network", "steadyrank.model.artifact",
                  "steadyrank.model.measures")
SERVICE_BASE = ("steadyrank.core", "steadyrank.ops", "steadyrank.proto",
                "steadyrank.model.measures.metrics", *READER_SIDE)
SERVICE_SHARED = ("steadyrank.service.settings", "steadyrank.service.stubs",
                  "steadyrank.service.protos", "steadyrank.service.request_schema",
                  "steadyrank.service.pair_metrics", "steadyrank.service.recorded_requests",
                  "steadyrank.service._generated")
ALLOWED = {
    "steadyrank.core": (),
    "steadyrank.model": (),  # the package's __init__: a docstring
    # the schema takes the reserved names from the layout (a leaf importing nothing)
    "steadyrank.model.schema": ("steadyrank.core", "steadyrank.model.artifact.layout"),
    "steadyrank.proto": (),
    "steadyrank.ops": ("steadyrank.core",),
    "steadyrank.model.config": ("steadyrank.core", "steadyrank.ops", "steadyrank.model.schema"),
    "steadyrank.model.measures": ("steadyrank.model.config", "steadyrank.model.schema"),
    "steadyrank.model.data": ("steadyrank.core", "steadyrank.model.config",
                              "steadyrank.model.schema"),
    "steadyrank.model.network": ("steadyrank.core", "steadyrank.ops", "steadyrank.model.config",
                                 "steadyrank.model.schema", "steadyrank.model.data"),
    "steadyrank.model.artifact": ("steadyrank.core", "steadyrank.ops", *READER_SIDE),
    "steadyrank.model.artifact.writer": ("steadyrank.core", "steadyrank.ops",
                                         "steadyrank.model.config", "steadyrank.model.schema",
                                         "steadyrank.model.data",
                                         "steadyrank.model.network", *READER_SIDE),
    "steadyrank.model.training": BELOW_TRAINING,
    "steadyrank.model.evaluation": (*BELOW_TRAINING, "steadyrank.model.training"),
    "steadyrank.model.publishing": (*BELOW_TRAINING, "steadyrank.model.training",
                                    "steadyrank.model.evaluation"),
    # service: the shared modules (settings, stubs, the request schema, pair metrics), the
    # server's room and the clients' room; neither room imports the other.
    "steadyrank.service": SERVICE_BASE,
    "steadyrank.service.serve": (*SERVICE_BASE, *SERVICE_SHARED),
    "steadyrank.service.client": (*SERVICE_BASE, *SERVICE_SHARED),
    "steadyrank.cli": ("steadyrank",),
}


def _rule(module: str) -> tuple[str, tuple[str, ...]]:
    owner = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)
    return owner, ALLOWED[owner]


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    found = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.startswith("steadyrank.")]


def _source(module: str) -> Path:
    package, _, rest = module.partition(".")[2].partition(".")
    root = REPO / PACKAGES[f"steadyrank.{package}"]
    path = root.joinpath(*rest.split(".")) if rest else root
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _violations(module: str, path: Path) -> list[str]:
    owner, allowed = _rule(module)
    wrong = []
    for line, name in _imports(path, module):
        ok = (_rule(name)[0] == owner or name.startswith(owner + ".")
              or any(name == a or name.startswith(a + ".") for a in allowed))
        if not ok:
            wrong.append(f"{module}:{line} imports {name} (rule of {owner})")
    return wrong


def test_no_module_imports_upward():
    assert [w for module in all_modules() for w in _violations(module, _source(module))] == []


def test_the_layering_check_catches_upward_imports(tmp_path):
    bad = tmp_path / "mod.py"
    bad.write_text("import numpy\nfrom steadyrank.model.data import tables\n"
                   "def f():\n    from steadyrank.model.training import trainer\n")
    assert _violations("steadyrank.model.data.mod", bad) == [
        "steadyrank.model.data.mod:4 imports steadyrank.model.training.trainer "
        "(rule of steadyrank.model.data)"]
    bad.write_text("from steadyrank.model.artifact import writer\n")
    assert len(_violations("steadyrank.service.mod", bad)) == 1
    assert _violations("steadyrank.cli.mod", bad) == []
    bad.write_text("from steadyrank.service.serve import shadow\n")  # a client on the server
    assert len(_violations("steadyrank.service.client.mod", bad)) == 1
    bad.write_text("from steadyrank.service.client import traffic\n")
    assert len(_violations("steadyrank.service.serve.mod", bad)) == 1
