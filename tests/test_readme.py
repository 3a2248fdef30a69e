"""The README's Python snippets work as written, each in a fresh process."""

import re
import shutil

import numpy as np

from tests.conftest import REPO, run_python, train_small_models


def snippets() -> list[str]:
    """The README's ```python blocks that use steadyrank.ops."""
    text = (REPO / "README.md").read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
            if "import steadyrank.ops as sro" in b]


def test_the_readme_has_the_snippets_this_test_runs():
    found = snippets()
    assert len(found) == 2
    assert any("tf.saved_model.load(" in s for s in found)


def test_the_usage_snippet_runs():
    usage = next(s for s in snippets() if "keras.Sequential" in s)
    result = run_python(usage + "\nprint(y.numpy().tolist(), model(tf.ones([2, 3])).shape)\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "[0.0, 0.25, 0.5625, 3.0] (2, 1)"


def test_loading_an_export_as_the_readme_says(tiny_data, tmp_path_factory, tmp_path):
    base = train_small_models(tiny_data, tmp_path_factory, prefix="readme")
    shutil.copytree(base / "ml" / "1", tmp_path / "models" / "movielens" / "1")
    loading = next(s for s in snippets() if "tf.saved_model.load(" in s)
    result = run_python(loading, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [float(v) for v in result.stdout.strip().splitlines()[-1].strip("[]").split()]
    from steadyrank.model.artifact import reader

    expected = reader.load(base / "ml" / "1").score_pairs(np.array([1, 1]), np.array([1, 50]))
    np.testing.assert_allclose(printed, expected, rtol=1e-5)
    assert "SmeLU" in reader.op_types(reader.read_saved_model(base / "ml" / "1"))
