"""A wheel install works without the checkout: the files the running program needs (the
.proto sources, the Prometheus configuration for `steadyrank up`, the op library's C++
sources) are package data, read through importlib.resources."""

import json
import os
import site
import subprocess
import sys

import pytest

from tests.conftest import REPO

CHECK = """
import json
from pathlib import Path
from steadyrank.cli import stack
from steadyrank.ops import build
from steadyrank.service import protos
messages, stubs = protos.load()
print(json.dumps({"proto_root": str(protos.PROTO_ROOT), "prometheus": str(stack.PROMETHEUS_DIR),
                  "cc": str(build.CC_DIR), "request": messages.RankRequest.DESCRIPTOR.name,
                  "sources": all((build.CC_DIR / f).is_file() for f in build.CPU_SOURCES),
                  "rules": (stack.PROMETHEUS_DIR / "alerts.yml").is_file()}))
"""


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "absent from the `packages` configuration" not in built.stderr
    wheel = next((tmp_path / "dist").glob("steadyrank-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=600)
    # The pinned dependencies come from this environment's site-packages (a plain path, so
    # its editable-install hook for the checkout is not read).
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    (target / "deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["STEADYRANK_OPS_LIB_DIR"] = str(tmp_path / "lib")  # no build is needed for this
    run = subprocess.run([str(python), "-m", "steadyrank.cli", "serve", "--help"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--model-base-path" in run.stdout
    check = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    out = json.loads(check.stdout.strip().splitlines()[-1])
    for key in ("proto_root", "prometheus", "cc"):
        assert out[key].startswith(str(target)), (key, out[key])
    assert out["request"] == "RankRequest" and out["sources"] and out["rules"]
