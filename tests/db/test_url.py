"""Database URLs as users write them become the async-driver URLs SQLAlchemy needs."""

from __future__ import annotations

import pytest

from ogcache.db.url import async_database_url
from ogcache.errors import ConfigurationError


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pass@db.example.com:5432/postgres",
        "postgres://user:pass@db.example.com:5432/postgres",
        "postgresql+psycopg2://user:pass@db.example.com:5432/postgres",
        "postgresql+asyncpg://user:pass@db.example.com:5432/postgres",
    ],
)
def test_postgresql_urls_use_asyncpg(url: str) -> None:
    result = async_database_url(url)
    assert result.drivername == "postgresql+asyncpg"
    assert (result.username, result.password) == ("user", "pass")
    assert (result.host, result.port, result.database) == ("db.example.com", 5432, "postgres")
    assert dict(result.query) == {}


def test_the_password_survives_with_special_characters() -> None:
    result = async_database_url("postgresql://user:p%40ss%2Fw0rd@host/db")
    assert result.password == "p@ss/w0rd"
    rendered = result.render_as_string(hide_password=False)
    assert rendered == "postgresql+asyncpg://user:p%40ss%2Fw0rd@host/db"


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("sqlite:///x.db", "x.db"),
        ("sqlite:////var/data/ogcache.db", "/var/data/ogcache.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite+aiosqlite:///x.db", "x.db"),
    ],
)
def test_sqlite_urls_use_aiosqlite(url: str, database: str) -> None:
    result = async_database_url(url)
    assert result.drivername == "sqlite+aiosqlite"
    assert result.database == database


@pytest.mark.parametrize(
    "sslmode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
)
def test_sslmode_becomes_asyncpgs_ssl(sslmode: str) -> None:
    result = async_database_url(f"postgresql://u:p@host:5432/postgres?sslmode={sslmode}")
    assert dict(result.query) == {"ssl": sslmode}


def test_other_query_options_are_kept_beside_ssl() -> None:
    result = async_database_url(
        "postgres://u:p@host:6543/postgres?sslmode=require&application_name=ogcache"
    )
    assert dict(result.query) == {"ssl": "require", "application_name": "ogcache"}
    assert result.port == 6543


def test_an_unknown_sslmode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OGCACHE_DATABASE_URL") as raised:
        async_database_url("postgresql://u:p@host/db?sslmode=sometimes")
    assert "sslmode" in str(raised.value)
    assert "p@host" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@host/db",
        "mysql+aiomysql://u:p@host/db",
        "oracle://u:p@host/db",
        "garbage",
        "",
        "://",
        "http://example.com/db",
    ],
)
def test_unsupported_or_garbage_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match="OGCACHE_DATABASE_URL"):
        async_database_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:s3cret-pw@host:notaport/db",
        "postgresql:/user:s3cret-pw@host/db",
        "mysql://user:s3cret-pw@host/db",
    ],
)
def test_errors_never_echo_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="OGCACHE_DATABASE_URL") as raised:
        async_database_url(url)
    assert "s3cret-pw" not in str(raised.value)
