"""Settings: defaults, OGCACHE_* variables, Upstash's own names, and errors naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ogcache.config import Settings, load_settings
from ogcache.errors import ConfigurationError

SECRET = "0123456789abcdef0123456789abcdef-long-enough"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OGCACHE_* or UPSTASH_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(("OGCACHE_", "UPSTASH_")):
            monkeypatch.delenv(name)


def test_defaults_are_sqlite_without_redis() -> None:
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite:///ogcache.db"
    assert settings.redis_url is None
    assert settings.upstash_redis_rest_url is None
    assert settings.upstash_redis_rest_token is None
    assert settings.jwt_secret is None
    assert settings.admin_token is None


def test_default_ttls() -> None:
    settings = load_settings(_env_file=None)
    ttls = (
        settings.ttl_profile,
        settings.ttl_conversation,
        settings.ttl_auth,
        settings.ttl_menu,
        settings.ttl_session,
    )
    assert ttls == (300, 600, 3600, 1800, 3600)


def test_prefixed_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_DATABASE_URL", "postgresql://u:p@db.example.com:5432/postgres")
    monkeypatch.setenv("OGCACHE_REDIS_URL", "rediss://default:pw@cache.example.com:6380/0")
    monkeypatch.setenv("OGCACHE_TTL_PROFILE", "42.5")
    monkeypatch.setenv("OGCACHE_TTL_MENU", "60")
    monkeypatch.setenv("OGCACHE_CACHE_PREFIX", "staging")
    monkeypatch.setenv("OGCACHE_JWT_SECRET", SECRET)
    monkeypatch.setenv("OGCACHE_LOG_LEVEL", "DEBUG")
    settings = load_settings(_env_file=None)
    assert settings.database_url == "postgresql://u:p@db.example.com:5432/postgres"
    assert settings.redis_url == "rediss://default:pw@cache.example.com:6380/0"
    assert settings.ttl_profile == 42.5
    assert settings.ttl_menu == 60
    assert settings.cache_prefix == "staging"
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == SECRET
    assert settings.log_level == "DEBUG"


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.setenv("TTL_PROFILE", "1")
    settings = load_settings(_env_file=None)
    assert settings.redis_url is None
    assert settings.ttl_profile == 300


def test_overrides_take_precedence_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_TTL_AUTH", "100")
    assert load_settings(_env_file=None, ttl_auth=200).ttl_auth == 200


def test_an_empty_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_REDIS_URL", "")
    assert load_settings(_env_file=None).redis_url is None


def test_upstash_variables_are_accepted_without_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://eu1-example.upstash.io")
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "AXXXupstash-rest-token-value")
    settings = load_settings(_env_file=None)
    assert settings.upstash_redis_rest_url == "https://eu1-example.upstash.io"
    token = settings.upstash_redis_rest_token
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == "AXXXupstash-rest-token-value"


def test_upstash_variables_are_accepted_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_UPSTASH_REDIS_REST_URL", "https://eu1-example.upstash.io")
    monkeypatch.setenv("OGCACHE_UPSTASH_REDIS_REST_TOKEN", "AXXXupstash-rest-token-value")
    settings = load_settings(_env_file=None)
    assert settings.upstash_redis_rest_url == "https://eu1-example.upstash.io"
    assert settings.upstash_redis_rest_token is not None
    assert settings.upstash_redis_rest_token.get_secret_value() == "AXXXupstash-rest-token-value"


def test_secrets_are_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "AXXXupstash-rest-token-value")
    monkeypatch.setenv("OGCACHE_JWT_SECRET", SECRET)
    monkeypatch.setenv("OGCACHE_ADMIN_TOKEN", SECRET[::-1])
    settings = load_settings(_env_file=None)
    assert "AXXXupstash" not in repr(settings.upstash_redis_rest_token)
    assert "AXXXupstash" not in str(settings.upstash_redis_rest_token)
    for shown in (repr(settings), str(settings)):
        assert "AXXXupstash" not in shown
        assert SECRET not in shown
        assert SECRET[::-1] not in shown


def test_settings_are_immutable() -> None:
    settings = load_settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.ttl_auth = 1  # type: ignore[misc]


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING")])
def test_the_log_level_is_read_in_any_case(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    monkeypatch.setenv("OGCACHE_LOG_LEVEL", given)
    assert load_settings(_env_file=None).log_level == level


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OGCACHE_TTL_PROFILE", "-1"),
        ("OGCACHE_TTL_AUTH", "0"),
        ("OGCACHE_TTL_MENU", "soon"),
        ("OGCACHE_CACHE_TIMEOUT", "-0.5"),
        ("OGCACHE_REDIS_URL", "http://cache.example.com:6379"),
        ("OGCACHE_REDIS_URL", "cache.example.com:6379"),
        ("OGCACHE_DATABASE_URL", "mysql://u:p@db.example.com/app"),
        ("OGCACHE_DATABASE_URL", "garbage"),
        ("OGCACHE_JWT_SECRET", "too-short"),
        ("OGCACHE_ADMIN_TOKEN", "too-short"),
        ("OGCACHE_CACHE_PREFIX", "has:colon"),
        ("OGCACHE_LOG_LEVEL", "TRACE"),
    ],
)
def test_an_invalid_variable_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable) as raised:
        load_settings(_env_file=None)
    assert raised.value.__cause__ is None  # no pydantic traceback with the raw input


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("ttl_session", -5, "OGCACHE_TTL_SESSION"),
        ("redis_url", "http://localhost:6379", "OGCACHE_REDIS_URL"),
        ("database_url", "mysql://localhost/app", "OGCACHE_DATABASE_URL"),
        ("jwt_secret", "short", "OGCACHE_JWT_SECRET"),
    ],
)
def test_an_invalid_override_names_its_variable(field: str, value: object, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(_env_file=None, **{field: value})


def test_every_invalid_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_TTL_PROFILE", "-1")
    monkeypatch.setenv("OGCACHE_REDIS_URL", "http://x")
    monkeypatch.setenv("OGCACHE_JWT_SECRET", "short")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    for variable in ("OGCACHE_TTL_PROFILE", "OGCACHE_REDIS_URL", "OGCACHE_JWT_SECRET"):
        assert variable in message


def test_a_rejected_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGCACHE_JWT_SECRET", "hunter2-secret")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(_env_file=None)
    assert "hunter2" not in str(raised.value)


def test_the_env_file_is_read_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OGCACHE_TTL_MENU=77\n")
    assert load_settings(_env_file=env_file).ttl_menu == 77
    monkeypatch.chdir(tmp_path)
    assert load_settings(_env_file=None).ttl_menu == 1800
    assert Settings(_env_file=None).ttl_menu == 1800  # type: ignore[call-arg]
