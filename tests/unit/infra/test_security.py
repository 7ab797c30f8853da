"""Secrets redaction, data-root checks and the trust_remote_code log line."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia.infra.errors import DeliaError
from delia.infra.security import (
    REDACTED,
    check_inside_roots,
    log_trust_remote_code,
    redact,
    redacted_config,
    secret_values,
)

NO_ENV: dict[str, str] = {}
FAKE_ENV = {"WANDB_API_KEY": "abcd1234efgh", "HOME": "/root", "SHORT_TOKEN": "abc"}


# ---------------------------------------------------------------- redaction by key name


def test_key_names_redacted_at_any_depth() -> None:
    cfg = {
        "api_key": "k1",
        "logger": {"wandb": {"WANDB_API_KEY": "k2", "project": "p"}},
        "services": [{"name": "db", "password": "pw"}, {"name": "hub", "hf_token": "hf_x"}],
        "auth": {
            "apikey": "k3",
            "client_secret": "s",
            "passwd": "p2",
            "Access_Token": "t",
            "private_key": "pk",
        },
        "deep": [[{"secret_key": "sk", "auth_token": "at"}]],
    }
    out = redact(cfg, env=NO_ENV)
    assert out["api_key"] == REDACTED
    assert out["logger"]["wandb"] == {"WANDB_API_KEY": REDACTED, "project": "p"}
    assert out["services"] == [{"name": "db", "password": REDACTED}, {"name": "hub", "hf_token": REDACTED}]
    assert all(v == REDACTED for v in out["auth"].values())
    assert out["deep"] == [[{"secret_key": REDACTED, "auth_token": REDACTED}]]


def test_ordinary_token_keys_left_alone() -> None:
    cfg = {
        "special_token": "<|sep|>",
        "pad_token": "<pad>",
        "max_new_tokens": 64,
        "num_tokens": 1000,
        "token_init": "mean",
        "model": {"special_token": "<|x|>", "tokenizer": "gpt2", "keys": "a,b", "secret_santa": "yes"},
    }
    assert redact(cfg, env=NO_ENV) == cfg


def test_empty_or_non_string_secret_values_kept() -> None:
    cfg = {"api_key": "", "password": None, "secret": {"api_key": "x"}}
    assert redact(cfg, env=NO_ENV) == {"api_key": "", "password": None, "secret": {"api_key": REDACTED}}


# ---------------------------------------------------------------- redaction by value


def test_secret_values_filters_names_and_length() -> None:
    env = {**FAKE_ENV, "DB_PASSWORD": "hunter2hunter2", "my_secret": "zzzzzzzz", "PATH": "/usr/bin:/bin"}
    assert secret_values(env) == ["hunter2hunter2", "abcd1234efgh", "zzzzzzzz"]


def test_secret_values_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELIA_TEST_SECRET", "s3cr3t-value-xyz")
    assert "s3cr3t-value-xyz" in secret_values()
    assert secret_values() == secret_values(os.environ)


def test_value_redaction_inside_longer_strings() -> None:
    cfg = {
        "url": "https://user:abcd1234efgh@host",
        "home": "/root/data",
        "short": "abc",
        "list": ["abcd1234efgh", "x abcd1234efgh y abcd1234efgh", 3, None],
        "nested": {"note": "token abc is short"},
    }
    out = redact(cfg, env=FAKE_ENV)
    assert out["url"] == f"https://user:{REDACTED}@host"
    assert out["home"] == "/root/data"
    assert out["short"] == "abc"
    assert out["list"] == [REDACTED, f"x {REDACTED} y {REDACTED}", 3, None]
    assert out["nested"] == {"note": "token abc is short"}


def test_input_not_modified() -> None:
    cfg = {"api_key": "k", "url": "https://u:abcd1234efgh@h", "items": [{"password": "p"}, "abcd1234efgh"]}
    before = copy.deepcopy(cfg)
    out = redact(cfg, env=FAKE_ENV)
    assert cfg == before
    assert out is not cfg
    assert out["items"] is not cfg["items"]
    assert out["items"][0] is not cfg["items"][0]


def test_redacted_config_resolves_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TEST_KEY", "very-secret-value-123")
    cfg = OmegaConf.create(
        {
            "logger": {"wandb": {"api_key": "${oc.env:MY_TEST_KEY}", "project": "delia"}},
            "echo": "key=${oc.env:MY_TEST_KEY}",
            "missing": "???",
        }
    )
    out = redacted_config(cfg)
    assert isinstance(out, dict)
    assert out["logger"]["wandb"] == {"api_key": REDACTED, "project": "delia"}
    assert out["echo"] == f"key={REDACTED}"
    assert out["missing"] == "???"
    assert "very-secret-value-123" not in repr(out)


# ---------------------------------------------------------------- data roots


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root/inside.jsonl`` and ``outside.jsonl`` next to ``root``."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "inside.jsonl").write_text("{}\n")
    outside = tmp_path / "outside.jsonl"
    outside.write_text("{}\n")
    return root, outside


def test_inside_root_allowed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    got = check_inside_roots(root / "inside.jsonl", [str(root)], "data.train_path")
    assert got == (root / "inside.jsonl").resolve()
    # Any of several roots will do, and roots may be Path objects.
    assert check_inside_roots(str(root / "inside.jsonl"), [Path("/nonexistent"), root], "x") == got


def test_dotdot_escape_refused(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(DeliaError, match="data.train_path"):
        check_inside_roots(f"{root}/../outside.jsonl", [str(root)], "data.train_path")


def test_absolute_outside_refused(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    with pytest.raises(DeliaError):
        check_inside_roots(str(outside), [str(root)], "data.val_path")
    with pytest.raises(DeliaError):
        check_inside_roots("/etc/passwd", [str(root)], "data.val_path")


def test_symlink_escape_refused(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    link = root / "link.jsonl"
    link.symlink_to(outside)
    with pytest.raises(DeliaError):
        check_inside_roots(link, [root], "data.train_path")
    # A directory symlink escaping the root is refused too.
    (root / "dirlink").symlink_to(outside.parent)
    with pytest.raises(DeliaError):
        check_inside_roots(root / "dirlink" / "outside.jsonl", [root], "data.train_path")


def test_prefix_sibling_not_inside(tmp_path: Path) -> None:
    """``/x/root2`` is not inside ``/x/root`` although the string starts the same."""
    (tmp_path / "root").mkdir()
    (tmp_path / "root2").mkdir()
    with pytest.raises(DeliaError):
        check_inside_roots(tmp_path / "root2" / "f.jsonl", [tmp_path / "root"], "data.train_path")


@pytest.mark.parametrize("roots", [None, []])
def test_no_roots_passes_through(roots: list[str] | None) -> None:
    assert check_inside_roots("../anything/../x.jsonl", roots, "opt") == Path("../anything/../x.jsonl")
    assert check_inside_roots("~/x.jsonl", roots, "opt") == Path("~/x.jsonl")


def test_error_is_one_line_and_names_option(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    with pytest.raises(DeliaError) as info:
        check_inside_roots(str(outside), [str(root), "/srv/data"], "data.train_path")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == (
        f"data.train_path={outside} is outside the allowed data roots ({root}, /srv/data); "
        "move the file under one of them or extend paths.data_roots"
    )


# ---------------------------------------------------------------- trust_remote_code


def test_log_trust_remote_code(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("delia.test_security")
    with caplog.at_level(logging.INFO, logger=logger.name):
        log_trust_remote_code("org/model", True, logger)
        log_trust_remote_code("gpt2", False, logger)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "model org/model: trust_remote_code=True: code from the model repository will run"),
        (logging.INFO, "model gpt2: trust_remote_code=False"),
    ]
