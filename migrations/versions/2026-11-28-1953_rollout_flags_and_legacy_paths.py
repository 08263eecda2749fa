"""rollout flags and legacy paths

Revision ID: 0005_rollout
Revises: 0004_identity
Create Date: 2026-11-28 19:53:00

Creates the flag tables and seeds the five flags of the strategy (all off, so a fresh
deployment serves everyone through the legacy path), plus incidents and the database document
store.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.kit import clock
from aayu_accounts.models.base import UTCDateTime

revision: str = "0005_rollout"
down_revision: str | None = "0004_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# NEW_AUTH, NEW_DATABASE and BILLING share one bucket group so the strategy's "25 % of users"
# is the same quarter of users on every new-path flag.
ROLLOUT_GROUP = "v3-rollout"
# (key, bucket group, requires, percent, description). Global switches start at 100 % so that
# turning them on reaches everyone; the new-path flags start at 0 % (on + allow list = beta).
SEED_FLAGS = [
    ("NEW_AUTH", ROLLOUT_GROUP, [], 0, "Sign-in of legacy users against the new identity store"),
    ("NEW_DATABASE", ROLLOUT_GROUP, [], 0, "User documents served from the database"),
    ("BILLING", ROLLOUT_GROUP, ["NEW_DATABASE"], 0, "Subscriptions, invoices, entitlements"),
    ("SHADOW_WRITES", None, [], 100, "Copy every document write to the other store"),
    ("FALLBACK", None, [], 100, "Serve a failed new-path request through the legacy path"),
]


def upgrade() -> None:
    feature_flags = op.create_table(
        "feature_flags",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rollout_percent", sa.Integer(), nullable=False),
        sa.Column("allow_user_ids", sa.JSON(), nullable=False),
        sa.Column("deny_user_ids", sa.JSON(), nullable=False),
        sa.Column("allow_org_ids", sa.JSON(), nullable=False),
        sa.Column("deny_org_ids", sa.JSON(), nullable=False),
        sa.Column("requires", sa.JSON(), nullable=False),
        sa.Column("bucket_group", sa.String(64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "rollout_percent >= 0 AND rollout_percent <= 100",
            name=op.f("ck_feature_flags_percent_range"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_feature_flags")),
    )
    op.create_table(
        "flag_schedule_steps",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("flag_key", sa.String(64), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("rollout_percent", sa.Integer(), nullable=True),
        sa.Column("applied_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flag_key"],
            ["feature_flags.key"],
            name=op.f("fk_flag_schedule_steps_flag_key_feature_flags"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_schedule_steps")),
    )
    op.create_index("ix_flag_schedule_steps_due", "flag_schedule_steps", ["applied_at", "run_at"])
    config_state = op.create_table(
        "flag_config_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_config_state")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("flags_before", sa.JSON(), nullable=False),
        sa.Column("flags_after", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("timeline", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_created_at", "incidents", ["created_at"])
    op.create_table(
        "user_documents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_documents")),
        sa.UniqueConstraint("subject", "key", name=op.f("uq_user_documents_subject_key")),
    )

    op.create_table(
        "legacy_user_links",
        sa.Column("legacy_subject", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("migrated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_legacy_user_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("legacy_subject", name=op.f("pk_legacy_user_links")),
        sa.UniqueConstraint("user_id", name=op.f("uq_legacy_user_links_user_id")),
    )

    now = clock.now()
    op.bulk_insert(
        feature_flags,
        [
            {
                "key": key,
                "enabled": False,
                "rollout_percent": percent,
                "allow_user_ids": [],
                "deny_user_ids": [],
                "allow_org_ids": [],
                "deny_org_ids": [],
                "requires": requires,
                "bucket_group": group,
                "description": description,
                "owner": "platform",
                "created_at": now,
                "updated_at": now,
            }
            for key, group, requires, percent, description in SEED_FLAGS
        ],
    )
    op.bulk_insert(config_state, [{"id": 1, "version": 1, "updated_at": now}])


def downgrade() -> None:
    op.drop_table("legacy_user_links")
    op.drop_table("user_documents")
    op.drop_index("ix_incidents_created_at", table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("flag_config_state")
    op.drop_index("ix_flag_schedule_steps_due", table_name="flag_schedule_steps")
    op.drop_table("flag_schedule_steps")
    op.drop_table("feature_flags")
