import tomllib

import pytest

from governor.config import example_config, load_config
from governor.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_files(tmp_path):
    cfg = load_config(tmp_path / "govd.toml", tmp_path / "conf.d")
    assert cfg.get("daemon", "period_ms") == 200
    assert cfg.get("daemon", "policy") == "balanced"
    assert cfg.files == []


def test_conf_d_layers_over_main_in_name_order_and_sources_are_tracked(tmp_path):
    main = write(tmp_path / "govd.toml", "[daemon]\nperiod_ms = 500\npolicy = 'static-example'\n")
    write(tmp_path / "conf.d/20-b.toml", "[daemon]\nperiod_ms = 300\n")
    write(tmp_path / "conf.d/10-a.toml", "[daemon]\nperiod_ms = 100\n[gpu.3]\npolicy = 'performance'\n")
    cfg = load_config(main, tmp_path / "conf.d")
    assert cfg.get("daemon", "period_ms") == 300
    rows = {r["key"]: r for r in cfg.effective()}
    assert rows["daemon.period_ms"]["source"].endswith("20-b.toml")
    assert rows["daemon.policy"]["source"] == str(main)
    assert rows["envelope.error_budget"]["source"] == "default"
    assert cfg.gpu_value(3, "GPU-x", "policy", "d") == "performance"
    assert cfg.gpu_value(2, "GPU-x", "policy", "d") == "d"


@pytest.mark.parametrize("text,match", [
    ("[daemon]\nperiod_ms = 'fast'\n",
     r"govd.toml: daemon.period_ms: got 'fast'; allowed: an integer in \[20, 10000\]"),
    ("[daemon]\nperiod_ms = 5\n", r"daemon.period_ms: got 5; allowed: an integer in \[20, 10000\]"),
    ("[daemon]\nperiod = 200\n", r"daemon.period: unknown key; did you mean 'period_ms'\?"),
    ("[envelop]\n", r"envelop: unknown section; did you mean 'envelope'\?"),
    ("[daemon]\nlog_level = 'loud'\n", r"daemon.log_level: got 'loud'; allowed: one of 'debug'"),
    ("[daemon]\ndry_run = 1\n", r"daemon.dry_run: got 1; allowed: true or false"),
    ("[gpu.first]\npolicy = 'x'\n", r"gpu.first: GPU key must be an index"),
    ("[daemon\n", r"not valid TOML"),
])
def test_errors_name_file_key_and_what_is_allowed(tmp_path, text, match):
    main = write(tmp_path / "govd.toml", text)
    with pytest.raises(ConfigError, match=match):
        load_config(main, None)


def test_named_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", None, required=True)


def test_example_config_is_valid_and_documents_every_key(tmp_path):
    text = example_config()
    uncommented = "\n".join(line[1:] if line.startswith("#") and line[1:2] not in (" ", "")
                            else ("" if line.startswith("#") else line) for line in text.splitlines())
    data = tomllib.loads(uncommented)
    from governor.config import SCHEMA

    assert set(data) == set(SCHEMA) | {"gpu", "expert"}
    assert set(data["expert"]) == {"ledger"}
    for section, keys in SCHEMA.items():  # every key documented, each in its own table
        for name, key in keys.items():
            assert name in (data["expert"][section] if key.expert else data[section])
    main = write(tmp_path / "govd.toml", uncommented)
    load_config(main, None)


def test_an_estimator_constant_is_set_only_under_expert(tmp_path):
    with pytest.raises(ConfigError, match=r"ledger.model_error: an estimator constant: set it under \[expert.ledger\]"):
        load_config(write(tmp_path / "a.toml", "[ledger]\nmodel_error = 0.05\n"), None)
    cfg = load_config(write(tmp_path / "b.toml", "[expert.ledger]\nmodel_error = 0.05\n"), None)
    assert cfg.section("ledger").model_error == 0.05
    assert any(r["key"] == "expert.ledger.model_error" and r["source"].endswith("b.toml") for r in cfg.effective())
    with pytest.raises(ConfigError, match="expert.ledger.price_per_kwh"):
        load_config(write(tmp_path / "c.toml", "[expert.ledger]\nprice_per_kwh = 0.2\n"), None)


def test_shipped_example_file_matches_the_schema():
    from pathlib import Path

    shipped = Path(__file__).resolve().parent.parent / "governor" / "govd.example.toml"
    assert shipped.read_text() == example_config() + "\n"


def test_the_architecture_doc_lists_what_a_reload_applies():
    from pathlib import Path

    from governor.config import reload_keys

    doc = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    section = doc.split("<!-- begin: reload-keys -->\n", 1)[1].split("<!-- end: reload-keys -->", 1)[0]
    applied, restart = reload_keys()
    assert all(f"`{k}`" in section for k in applied + restart)
    assert section.index("`daemon.dry_run`") > section.index("Need a restart")


def test_govctl_finds_the_system_socket_for_a_group_member(monkeypatch, tmp_path):
    """A non-root member of the govd group ran `govctl status`, which looked only in a per-user
    folder and said govd was not running; it must find /run/govd/govd.sock."""
    import os

    from governor.paths import SYSTEM_SOCKET, control_socket, resolve_paths

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    paths = resolve_paths(env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    assert paths.socket == tmp_path / "run" / "govd" / "govd.sock"
    assert control_socket(paths, explicit=False) == SYSTEM_SOCKET  # no daemon of their own
    paths.socket.parent.mkdir(parents=True)
    paths.socket.touch()
    assert control_socket(paths, explicit=False) == paths.socket  # their own daemon first
    assert control_socket(resolve_paths(tmp_path / "demo"), explicit=True) == tmp_path / "demo" / "run" / "govd.sock"
