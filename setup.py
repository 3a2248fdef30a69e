"""Build hook: the wheel (and an editable install) gets the generated gRPC stubs.

Everything else about the package is declared in pyproject.toml.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _codegen():
    spec = importlib.util.spec_from_file_location("_steadyrank_codegen",
                                                  ROOT / "proto" / "codegen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    """build_py, then protoc on proto/steadyrank/*.proto into steadyrank/service/_generated
    (in the source tree for an editable install, in the build folder for a wheel)."""

    def run(self) -> None:
        super().run()
        out = (ROOT / "service" if self.editable_mode
               else Path(self.build_lib) / "steadyrank" / "service") / "_generated"
        _codegen().generate(ROOT / "proto", out)


setup(cmdclass={"build_py": BuildPyWithStubs})
