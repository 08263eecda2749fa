"""Rollout settings, read from the same ``AAYU_*`` environment as the rest of the service.

Kept apart from ``config.Settings`` so the rollout's knobs (propagation, staleness, the
auto-rollback thresholds) live next to the code they tune.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RolloutSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AAYU_", extra="ignore")

    # Safety net behind pub/sub: how often each instance compares its version with the
    # database's (NOTES.md: LISTEN/NOTIFY and pub/sub lose messages while disconnected).
    flag_poll_seconds: float = Field(default=2.0, gt=0)
    # A snapshot not confirmed current for this long is not trusted: the legacy path serves.
    flag_max_staleness_seconds: float = Field(default=30.0, gt=0)
    flag_channel: str = "flags"

    # The new path's time budget before FALLBACK serves the request through the legacy path.
    new_path_timeout_seconds: float = Field(default=5.0, gt=0)

    # Auto-rollback (the strategy's thresholds; windows and minimum sample per NOTES.md).
    auto_rollback_enabled: bool = True
    auto_rollback_dry_run: bool = False
    auto_rollback_interval_seconds: float = Field(default=5.0, gt=0)
    auto_rollback_short_window_seconds: float = Field(default=60.0, gt=0)
    auto_rollback_long_window_seconds: float = Field(default=300.0, gt=0)
    auto_rollback_min_requests: int = Field(default=50, ge=1)
    auto_rollback_max_error_rate: float = Field(default=0.05, ge=0, le=1)
    auto_rollback_max_p95_seconds: float = Field(default=3.0, gt=0)
    auto_rollback_min_success_rate: float = Field(default=0.95, ge=0, le=1)
    incident_dir: Path = Path("./var/incidents")
