"""Imports have no side effects: each public module imports in a fresh interpreter with a
clean environment, nothing loads (or builds) the op library until it is used, and only the
model and service packages set one variable (the Keras 2 switch TFRS needs)."""

import json
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = {"steadyrank.ops": "ops", "steadyrank.model": "model",
            "steadyrank.service": "service", "steadyrank.cli": "cli"}
SKIP = {"steadyrank.cli.__main__"}  # runs the command


def public_modules() -> list[str]:
    names = list(PACKAGES)
    for package, folder in PACKAGES.items():
        for info in pkgutil.iter_modules([str(REPO / folder)]):
            name = f"{package}.{info.name}"
            if not info.name.startswith("_") and name not in SKIP:
                names.append(name)
    return sorted(names)


CHECK = """
import json, os, sys
before = dict(os.environ)
import importlib
importlib.import_module(sys.argv[1])
maps = open("/proc/self/maps").read()
changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k))
print(json.dumps({"library_loaded": "_smelu_ops.so" in maps, "env_changed": changed}))
"""


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "STEADYRANK_OPS_LIB_DIR", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep}


def _import(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, module], capture_output=True,
                          text=True, env=_clean_env(), timeout=300, cwd=Path("/"))


def test_every_public_module_imports_alone_without_side_effects():
    # What TensorFlow's own import sets (TPU_ML_PLATFORM...) is not ours to judge.
    baseline = _import("tensorflow")
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    tensorflow_sets = json.loads(baseline.stdout.strip().splitlines()[-1])["env_changed"]
    modules = public_modules()
    assert "steadyrank.model.layers" in modules and "steadyrank.service.server" in modules
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(modules, pool.map(_import, modules), strict=True))
    for module, result in results.items():
        assert result.returncode == 0, f"{module}: {result.stderr[-2000:]}"
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert not out["library_loaded"], f"importing {module} loaded the op library"
        ours = (["TF_USE_LEGACY_KERAS"] if module.split(".")[1] in ("model", "service", "cli")
                else [])
        allowed = ours + tensorflow_sets
        assert set(out["env_changed"]) <= set(allowed), (module, out["env_changed"])


@pytest.mark.parametrize("use", ["import steadyrank.ops as o, tensorflow as tf; "
                                 "o.smelu(tf.constant([1.0]))",
                                 "from steadyrank.ops import load_library; load_library()"])
def test_the_library_loads_on_first_use(use):
    code = f"{use}\nprint('_smelu_ops.so' in open('/proc/self/maps').read())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_clean_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
