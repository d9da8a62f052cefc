"""All settings in one place, read from ``OGCACHE_*`` environment variables (and ``.env``).

Invalid values fail at start-up with :class:`~ogcache.errors.ConfigurationError` naming the
variable. Secrets are ``SecretStr`` so they never appear in reprs or logs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ogcache.cache import BackendOptions, BreakerSettings, LocalSettings, Policy
from ogcache.cache.backends import backend_schemes
from ogcache.errors import ConfigurationError

__all__ = ["Settings", "load_settings", "redact_url"]

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """The service's configuration; every field is ``OGCACHE_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix="OGCACHE_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///ogcache.db"
    # Seconds to connect to PostgreSQL (asyncpg waits 60 s by default) and for the start-up
    # check; past it a command or start-up fails in one line naming the database and host.
    database_connect_timeout: Seconds = 5.0
    redis_url: str | None = None
    upstash_redis_rest_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OGCACHE_UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_URL"),
    )
    upstash_redis_rest_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OGCACHE_UPSTASH_REDIS_REST_TOKEN", "UPSTASH_REDIS_REST_TOKEN"
        ),
    )
    jwt_secret: SecretStr | None = None
    admin_token: SecretStr | None = None

    cache_prefix: str = Field(default="oglab", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    cache_timeout: Seconds = 0.5
    cache_connect_timeout: Seconds = 0.5
    cache_pool_timeout: Seconds = 1.0
    cache_max_connections: Annotated[int, Field(ge=1, le=10_000)] = 64
    memory_cache_max_entries: Annotated[int, Field(ge=1)] = 10_000
    memory_cache_max_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024

    ttl_profile: Seconds = 300
    ttl_conversation: Seconds = 600
    ttl_auth: Seconds = 3600
    ttl_menu: Seconds = 1800
    ttl_session: Seconds = 3600
    ttl_analytics: Seconds = 300
    negative_ttl: Seconds = 30
    stale_grace: Annotated[float, Field(ge=0)] = 600

    cache_ttl_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.1
    cache_lease_ttl: Seconds = 10
    cache_lease_wait: Annotated[float, Field(ge=0)] = 2.0
    cache_early_refresh_beta: Annotated[float, Field(ge=0)] = 1.0
    cache_failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    cache_cool_down: Seconds = 2.0
    # Breaker detections (docs/resilience.md); 0 turns each off. Settle: None = 2 cool-downs.
    cache_slow_call_threshold: Annotated[float, Field(ge=0)] = 0.1
    cache_stall_threshold: Annotated[float, Field(ge=0)] = 0.02
    cache_recovery_settle: Annotated[float, Field(ge=0)] | None = None
    cache_max_value_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    # In-process tier (L1) in front of Redis, per namespace; 0 turns it off.
    local_ttl_menu: Annotated[float, Field(ge=0)] = 10
    local_ttl_auth: Annotated[float, Field(ge=0)] = 30
    local_ttl_profile: Annotated[float, Field(ge=0)] = 30
    local_max_entries: Annotated[int, Field(ge=1)] = 10_000
    local_max_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024

    # Consistency verifier (docs/consistency.md): the share of cache hits re-read from the
    # database verify_delay seconds later and compared (0: off).
    verify_sample: Annotated[float, Field(ge=0, le=1)] = 0.001
    verify_delay: Annotated[float, Field(gt=0, le=3600)] = 2.0

    token_ttl: Seconds = 3600
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # uvicorn's line per request (a tenth of a cached read's time); metrics count requests.
    access_log: bool = False

    auto_migrate: bool = True
    seed_demo_data: bool = False
    refresh_interval: Annotated[float, Field(ge=0)] = 240
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 256 * 1024
    # What one request may send besides its body (docs/security.md).
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    request_read_timeout: Seconds = 20
    # What one user may store (docs/security.md); a write past a limit is refused with 409.
    max_sessions_per_user: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_session_bytes_per_user: Annotated[int, Field(ge=1024)] = 512 * 1024
    # Worst case per user: max_messages_per_user x 16,000 characters (80 M by default).
    max_conversations_per_user: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_messages_per_conversation: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    max_messages_per_user: Annotated[int, Field(ge=1, le=10_000_000)] = 5000
    max_preferences_keys: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_preferences_bytes: Annotated[int, Field(ge=256)] = 16 * 1024
    # Messages of a conversation kept in its cache entry (the newest); older ones are paged.
    conversation_window: Annotated[int, Field(ge=1, le=500)] = 50
    # GET /api/cache without the admin token: the key count and memory figures are measured
    # at most this often and shared, so anonymous callers cannot make Redis scan on demand.
    stats_max_age: Annotated[float, Field(ge=0)] = 10
    # Change capture (ogcache.changes): false = the outbox is drained, nothing invalidated.
    change_capture: bool = True
    change_poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.05
    change_analytics_interval: Annotated[float, Field(ge=0, le=3600)] = 10

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0].lower()
        if scheme not in ("postgresql", "postgres", "sqlite"):
            raise ValueError(
                "must start with postgresql://, postgres:// or sqlite:/// "
                f"(got {scheme + '://' if scheme else 'no scheme'})"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = urlsplit(value).scheme.lower()
        if scheme not in backend_schemes():
            raise ValueError(
                f"must start with one of {', '.join(s + '://' for s in backend_schemes())} "
                f"(got {scheme + '://' if scheme else 'no scheme'})"
            )
        return value

    def backend_options(self) -> BackendOptions:
        """The cache store's connection bounds."""
        return BackendOptions(
            timeout=self.cache_timeout,
            connect_timeout=self.cache_connect_timeout,
            max_connections=self.cache_max_connections,
            pool_timeout=self.cache_pool_timeout,
            memory_max_entries=self.memory_cache_max_entries,
            memory_max_bytes=self.memory_cache_max_bytes,
        )

    def cache_policy(self) -> Policy:
        return Policy(
            ttl_jitter=self.cache_ttl_jitter,
            lease_ttl=self.cache_lease_ttl,
            lease_wait=self.cache_lease_wait,
            early_refresh_beta=self.cache_early_refresh_beta,
            max_value_bytes=self.cache_max_value_bytes,
        )

    def breaker_settings(self) -> BreakerSettings:
        return BreakerSettings(
            failure_threshold=self.cache_failure_threshold,
            cool_down=self.cache_cool_down,
            slow_call_threshold=self.cache_slow_call_threshold,
            stall_threshold=self.cache_stall_threshold,
            recovery_settle=self.cache_recovery_settle,
        )

    def local_settings(self) -> LocalSettings:
        return LocalSettings(max_entries=self.local_max_entries, max_bytes=self.local_max_bytes)

    @field_validator("jwt_secret", "admin_token")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise ``ConfigurationError`` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = (
                field
                if field.startswith(("OGCACHE_", "UPSTASH_"))
                else (f"OGCACHE_{field.upper()}")
            )
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***@"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=userinfo + host))
