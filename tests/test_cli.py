"""The steadyrank command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from steadyrank.cli.main import build_parser


def _steadyrank() -> list[str]:
    exe = Path(sys.executable).parent / "steadyrank"
    return [str(exe)] if exe.exists() else [shutil.which("steadyrank") or "steadyrank"]


def test_ops_info_reports_the_built_library():
    proc = subprocess.run([*_steadyrank(), "ops", "info"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["tensorflow_version"] and info["path"].endswith("_smelu_ops.so")


def test_ops_info_without_library_says_how_to_build(tmp_path):
    proc = subprocess.run([*_steadyrank(), "ops", "info"], capture_output=True, text=True,
                          env={**os.environ, "STEADYRANK_OPS_LIB_DIR": str(tmp_path)},
                          timeout=120)
    assert proc.returncode == 1 and "steadyrank ops build" in proc.stderr


def test_unknown_subcommand_is_a_usage_error():
    proc = subprocess.run([*_steadyrank(), "frobnicate"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "frobnicate" in proc.stderr


def test_ops_build_forwards_options_to_the_build_module(tmp_path):
    env = {**os.environ, "STEADYRANK_OPS_LIB_DIR": str(tmp_path)}
    proc = subprocess.run([*_steadyrank(), "ops", "build", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "--no-cuda" in proc.stdout
    proc = subprocess.run([*_steadyrank(), "ops", "build", "--bogus"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "--bogus" in proc.stderr
    assert not any(tmp_path.iterdir())  # neither call built anything


def test_environment_keeps_user_values_and_turns_onednn_off_only_with_a_gpu(tmp_path):
    from steadyrank.cli import environment

    env: dict[str, str] = {}
    environment.prepare(env, gpu=False)
    assert env == {"TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "",
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
    env = {}
    environment.prepare(env, gpu=True, verbose=True)
    assert env == {"TF_USE_LEGACY_KERAS": "1", "TF_ENABLE_ONEDNN_OPTS": "0",
                   "STEADYRANK_LOG": "debug"}
    kept = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_USE_LEGACY_KERAS": "1"}
    environment.prepare(kept, gpu=True)
    assert kept["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert not environment.nvidia_device_present(tmp_path)
    (tmp_path / "nvidia0").touch()
    assert environment.nvidia_device_present(tmp_path)


def test_native_chatter_is_filtered_unless_debug():
    import os
    import subprocess
    import sys

    from steadyrank.cli import quiet

    assert quiet.is_noise(b"I0000 00:00:1795554018.834455   16979 port.cc:153] oneDNN custom")
    assert quiet.is_noise(b"E0000 00:00:1795552855.873565   12004 cuda_platform.cc:52] failed "
                          b"call to cuInit: INTERNAL: CUDA error")
    assert not quiet.is_noise(b"E0000 00:00:1.0   1 some_op.cc:10] a real error")
    assert not quiet.is_noise(b"[steadyrank train] epoch 1/5: rmse 0.93")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "STEADYRANK_LOG"))}
    cmd = [sys.executable, "-m", "steadyrank.cli", "ops", "build"]
    quiet_run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert quiet_run.returncode == 0, quiet_run.stderr[-2000:]
    assert "_smelu_ops.so" in quiet_run.stdout
    assert "I0000" not in quiet_run.stderr and "absl::InitializeLog" not in quiet_run.stderr
    loud = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**env, "STEADYRANK_LOG": "debug"})
    assert loud.returncode == 0 and "I0000" in loud.stderr


@pytest.mark.parametrize("args", [["rank", "--server", "localhost:1", "--model", "m", "--user",
                                   "1", "--timeout", "0.2"],
                                  ["health", "--server", "localhost:1", "--timeout", "0.2"]])
def test_light_clients_do_not_import_tensorflow(args):
    import subprocess
    import sys

    code = ("import sys\nfrom steadyrank.cli.main import main\n"
            f"status = main({args!r})\nprint(status, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split()[-2:] == ["1", "False"], result.stderr[-2000:]


def _serve_config(argv: list[str]):
    from steadyrank.cli import arguments
    from steadyrank.service import settings

    args = build_parser().parse_args(["serve", *argv])
    return arguments.settings_from(args, settings.ServerConfig, settings.flag_fields())


def test_serve_flags_are_the_server_configs_fields_with_its_defaults():
    from steadyrank.service.settings import ServerConfig, field_help, flag_fields

    assert _serve_config([]) == ServerConfig()  # every default comes from one place
    names = {f.name for f in flag_fields()}
    assert {"port", "max_queue", "batching", "workers", "recycle_after_loads"} <= names
    assert not names & {"worker", "ready_file", "serving_gate", "parent_pid", "recycle_file"}
    docs = field_help(ServerConfig)
    assert names <= set(docs) and all(docs.values())  # every flag has its help text
    config = _serve_config(["--port", "9000", "--no-batching", "--max-queue", "5",
                            "--metrics-host", "127.0.0.1", "--workers", "2",
                            "--model-base-path", "/m", "--max-wait-ms", "1.5"])
    assert (config.port, config.batching, config.max_queue, config.metrics_host,
            config.workers, config.model_base_path, config.max_wait_ms) == (
        9000, False, 5, "127.0.0.1", 2, Path("/m"), 1.5)


def test_serve_help_shows_each_fields_docstring_and_default(capsys):
    from steadyrank.service.settings import ServerConfig, field_help

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--max-message-bytes MAX_MESSAGE_BYTES" in shown
    assert "(default 64 MiB)" in shown and "(default 8500)" in shown
    assert field_help(ServerConfig)["shadow_rate"][:60] in shown
    assert "--no-batching" in shown


@pytest.mark.parametrize("argv, message", [
    (["--port", "x"], "invalid int value: 'x'"),
    (["--shadow-rate", "nan?"], "invalid float value"),
])
def test_bad_serve_flag_values_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        _serve_config(argv)
    assert message in capsys.readouterr().err
