"""Settings: every knob dxapi has, read from the environment as ``DXAPI_<NAME>``.

Fed by the environment (and CLI overrides); feeds ``db``, ``app`` and the CLI. ``docs/settings.md`` documents
every field; ``tests/unit/test_docs.py`` checks that nothing is missing there.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DXAPI_", frozen=True, extra="ignore")

    database_url: str = Field(
        "sqlite:///dxapi.db",
        description="SQLAlchemy URL of the database to serve; dxapi's own `dx_*` tables live there too.",
    )
    api_prefix: str = Field("/dynamic-entity", description="URL prefix of the generated endpoints.")
    default_page_limit: int = Field(1000, ge=1, description="Rows per page when `page[limit]` is absent.")
    max_page_limit: int = Field(10_000, ge=1, description="Largest `page[limit]` accepted.")
    max_include_depth: int = Field(5, ge=1, description="Longest `include` chain (relations deep).")
    max_filter_values: int = Field(
        1000, ge=1, description="Most values in one `in` filter, and most filters in one request."
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Largest request body accepted, in bytes.")
    max_batch_items: int = Field(10_000, ge=1, description="Most items in one write request.")
    deny_tables: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated table names that may never be configured, on top of the built-in "
        "deny-list (`dx_*` and the database's catalogs).",
    )
    reload_interval: float = Field(
        0.25, gt=0, description="Seconds between two checks of the configuration version by a worker."
    )
    pool_size: int = Field(10, ge=1, description="Database connections kept open per worker.")
    pool_timeout: float = Field(
        3.0, gt=0, description="Seconds a request waits for a free connection before answering 503."
    )
    host: str = Field("127.0.0.1", description="Address `dxapi serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `dxapi serve` listens on.")
    workers: int = Field(1, ge=1, description="Worker processes started by `dxapi serve`.")
    log_level: str = Field("info", description="Log level of the server (`debug`, `info`, `warning`, …).")

    @field_validator("deny_tables", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.default_page_limit > self.max_page_limit:
            raise ValueError("DXAPI_DEFAULT_PAGE_LIMIT must not exceed DXAPI_MAX_PAGE_LIMIT")
        return self
