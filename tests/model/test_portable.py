"""Portable exports: SmeLU and g-SmeLU in TensorFlow's own ops, equal to the op export on every
signature, loaded by a process that has TensorFlow alone."""

import json
import site
import sys

import numpy as np
import pytest
import tensorflow as tf

from steadyrank.cli.main import main as cli_main
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.portable import is_portable, make_portable
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.training.workflow import train_and_export
from steadyrank.ops import OP_TYPES, gsmelu, load_library, smelu
from steadyrank.ops.portable import gsmelu_composite, smelu_composite
from tests.conftest import eval_inputs, small_config

EDGES = [-np.inf, -3.0, -2.0, -1.0000001, -1.0, -0.9999999, -0.5, 0.0, 1e-30, 0.5, 0.9999999,
         1.0, 1.0000001, 2.0, 3.0, np.inf, np.nan]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    keep = ~np.isnan(a)
    np.testing.assert_array_equal(a[keep], b[keep])


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
@pytest.mark.parametrize("beta", [0.1, 1.0, 2.0])
def test_the_smelu_composite_is_the_op_bit_for_bit(dtype, beta):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.array(EDGES) * beta, rng.normal(0, 2 * beta, 5000)])
    x = tf.constant(x, dtype)
    # The SmeLU op itself (smelu() takes float64 to the g-SmeLU op, for an exact beta).
    op = load_library().sme_lu(x, beta=beta)
    _same(tf.cast(smelu_composite(x, beta), tf.float64).numpy(),
          tf.cast(op, tf.float64).numpy())
    if dtype != tf.float64:
        _same(tf.cast(op, tf.float64).numpy(), tf.cast(smelu(x, beta), tf.float64).numpy())


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
def test_the_gsmelu_composite_is_the_op_to_float_rounding(dtype):
    """The same steps; the compiled kernel may fuse a multiply and an add (one rounding
    fewer), so the two agree to a couple of ulps, not always bit for bit."""
    eps = float(np.finfo(dtype.as_numpy_dtype).eps)
    rng = np.random.default_rng(1)
    x = tf.constant(np.concatenate([np.tile(EDGES, (4, 1)).T, rng.normal(0, 2, (3000, 4))]),
                    dtype)
    for params in [(1.0, 1.0, 0.0, 1.0, 0.0), (0.5, 2.0, -0.1, 1.3, 0.2),
                   ([0.2, 0.5, 1.0, 3.0], [1.0, 0.1, 2.0, 0.5], [0.0, 0.05, -0.2, 0.0],
                    [1.0, 0.8, 1.5, 2.0], [0.0, 0.1, -0.3, 0.0])]:
        tensors = [tf.constant(p, dtype) for p in params]
        got = tf.cast(gsmelu_composite(x, *tensors), tf.float64).numpy()
        want = tf.cast(gsmelu(x, *tensors), tf.float64).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        keep = np.isfinite(want)
        np.testing.assert_array_equal(got[~keep & ~np.isnan(want)],
                                      want[~keep & ~np.isnan(want)])  # the infinities
        np.testing.assert_allclose(got[keep], want[keep], rtol=4 * eps, atol=4 * eps)


@pytest.fixture(scope="module")
def exports(tiny_data, tmp_path_factory):
    """An op export of each activation with a custom op, and its portable copy."""
    work = tmp_path_factory.mktemp("portable")
    out = {}
    for name, model in (("smelu", {"activation": "smelu", "smelu_beta": 0.5}),
                        ("gsmelu", {"activation": "gsmelu", "gsmelu_per_unit": True,
                                    "gsmelu_learn": ["alpha", "beta", "slope_left"]})):
        config = small_config(tiny_data, model=model)
        prepared = prepare_data(config)
        path = train_and_export(config, 1, work / name, work / f"ck-{name}", prepared=prepared,
                                log=lambda m: None)
        out[name] = (path, make_portable(path, work / f"{name}-portable"), prepared)
    return out


def _signature_inputs(model, prepared, n=200):
    """Inputs for every signature of a MovieLens-shaped export."""
    rows = eval_inputs(prepared, n)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rows[name][i])]))
        for name in ("user_id", "item_id")})).SerializeToString() for i in range(n)]
    user = int(rows["user_id"][0])
    items = np.asarray(model.item_ids[:50])
    return {"serving_default": {k: rows[k] for k in ("user_id", "item_id")},
            "rarity": {k: rows[k] for k in ("user_id", "item_id")},
            "examples": {"examples": np.array(examples, object)},
            "rank": {"user_id": np.int64(user), "item_ids": items},
            "rank_with_features": {"user_id": np.int64(10**9), "item_ids": items,
                                   "gender": np.array("F", object),
                                   "occupation": np.array("writer", object),
                                   "age": np.int64(30), "zip": np.array("94110", object)},
            "catalog": {}, "users": {}}


def _run_all(module, inputs):
    out = {}
    for name, args in inputs.items():
        result = module.signatures[name](**reader.as_tensors(args))
        out[name] = {k: v.numpy() for k, v in result.items()}
    return out


@pytest.mark.parametrize("activation", ["smelu", "gsmelu"])
def test_a_portable_export_is_the_same_model_on_every_signature(exports, activation):
    original, portable, prepared = exports[activation]
    a, b = reader.load(original), reader.load(portable)
    assert reader.uses_custom_ops(reader.read_saved_model(original))
    assert is_portable(portable) and not is_portable(original)
    assert portable.name == original.name  # the same version number
    assert (portable / "manifest.json").read_bytes() == (original / "manifest.json").read_bytes()
    assert set(b.signature_defs) == set(a.signature_defs)
    for name, sig in a.signature_defs.items():
        assert b.signature_defs[name] == sig  # the same inputs and outputs
    inputs = _signature_inputs(a, prepared)
    assert set(inputs) == set(a.signature_defs) - {"__saved_model_init_op"}
    got, want = _run_all(b.module, inputs), _run_all(a.module, inputs)
    for name in inputs:
        for key, value in want[name].items():
            if value.dtype.kind == "f":
                np.testing.assert_allclose(got[name][key], value, rtol=1e-6, atol=0)
            else:
                np.testing.assert_array_equal(got[name][key], value)


def test_tensorflow_alone_loads_and_runs_a_portable_export(exports, tmp_path):
    original, portable, prepared = exports["gsmelu"]
    a = reader.load(original)
    inputs = _signature_inputs(a, prepared)
    np.save(tmp_path / "inputs.npy", np.array([inputs], object), allow_pickle=True)
    code = f"""
        import json, sys
        import numpy as np
        try:
            import steadyrank  # noqa: F401
            raise SystemExit("steadyrank is importable here")
        except ImportError:
            pass
        import tensorflow as tf
        model = tf.saved_model.load({str(portable)!r})
        inputs = np.load({str(tmp_path / "inputs.npy")!r}, allow_pickle=True)[0]
        out = {{}}
        for name, args in inputs.items():
            tensors = {{k: tf.constant(v.tolist() if getattr(v, "dtype", None) == object
                                       else v) for k, v in args.items()}}
            result = model.signatures[name](**tensors)
            out[name] = {{k: v.numpy().tolist() for k, v in result.items()
                          if v.dtype != tf.string}}
        maps = open("/proc/self/maps").read()
        print(json.dumps({{"out": out, "library": "_smelu_ops" in maps,
                           "modules": sorted(m for m in sys.modules if "steadyrank" in m)}}))
    """
    # -S: no site, so no .pth file puts steadyrank's editable install on the path; the
    # site-packages folder itself comes back through PYTHONPATH, TensorFlow with it.
    done = run_python_isolated(code)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["library"] and not result["modules"]
    want = _run_all(a.module, inputs)
    for name, outputs in result["out"].items():
        for key, value in outputs.items():
            np.testing.assert_allclose(np.asarray(value), want[name][key], rtol=1e-6)
    assert set(result["out"]) == set(inputs)


def run_python_isolated(code: str):
    """``code`` in a fresh interpreter without site processing (steadyrank not importable),
    with this environment's site-packages on PYTHONPATH."""
    import subprocess
    import textwrap

    packages = ":".join(site.getsitepackages())
    return subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd="/",
                          env={"PYTHONPATH": packages, "TF_CPP_MIN_LOG_LEVEL": "3",
                               "PATH": "/usr/bin:/bin"})


def test_portable_cli_and_train_portable_dir(tiny_data, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\ndataset = "synthetic"\ndata_dir = "{tiny_data}"\n[model]\n'
                      'embedding_dim = 4\ndeep_layers = [8]\nactivation = "smelu"\n'
                      '[train]\nepochs = 1\nbatch_size = 2048\n')
    assert cli_main(["train", "--config", str(config), "--export-dir", str(tmp_path / "m"),
                     "--checkpoint-dir", str(tmp_path / "ck"), "--portable-dir",
                     str(tmp_path / "serving")]) == 0
    captured = capsys.readouterr()
    assert f"portable copy: {tmp_path / 'serving' / '1'}" in captured.err
    assert is_portable(tmp_path / "serving" / "1")
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "serving").iterdir())
    # The command on an export; its version exists already in that base.
    assert cli_main(["portable", str(tmp_path / "m"), "--out", str(tmp_path / "serving")]) == 1
    assert "serving/1: version already exists" in capsys.readouterr().err
    assert cli_main(["portable", str(tmp_path / "m" / "1"), "--out",
                     str(tmp_path / "other")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "other" / "1")
    assert cli_main(["portable", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 1
    assert "no model version" in capsys.readouterr().err
    assert not OP_TYPES & reader.op_types(reader.read_saved_model(tmp_path / "other" / "1"))
