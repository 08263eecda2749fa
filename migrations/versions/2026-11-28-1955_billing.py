"""billing: plans, subscriptions, invoices, usage events, the Stripe event inbox

Plans are seeded by the application from configuration (billing/plan/catalog.py) at start-up
and by ``aayu-accounts billing seed-plans``, not here: prices change without a migration.

Revision ID: 0007_billing
Revises: 0006_api_security
Create Date: 2026-11-28 19:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.models.base import UTCDateTime

revision: str = "0007_billing"
down_revision: str | None = "0006_api_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("per_seat", sa.Boolean(), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("notes_per_seat", sa.Integer(), nullable=False),
        sa.Column("max_seats", sa.Integer(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("stripe_price_id", sa.String(100), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("current_period_start", UTCDateTime(), nullable=False),
        sa.Column("current_period_end", UTCDateTime(), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("trial_end", UTCDateTime(), nullable=True),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.Column("past_due_since", UTCDateTime(), nullable=True),
        sa.Column("dunning_stage", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_customer_id", sa.String(100), nullable=True),
        sa.Column("provider_subscription_id", sa.String(100), nullable=True),
        sa.Column("payment_method", sa.String(100), nullable=True),
        sa.Column("provider_version", sa.BigInteger(), nullable=False),
        sa.Column("payment_method_version", sa.BigInteger(), nullable=False),
        sa.Column("converted_from_trial_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_subscriptions_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_subscriptions_plan_id_plans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("org_id", name=op.f("uq_subscriptions_org_id")),
        sa.UniqueConstraint(
            "provider_subscription_id", name=op.f("uq_subscriptions_provider_subscription_id")
        ),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=True),
        sa.Column("provider_invoice_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("billing_reason", sa.String(32), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("hosted_url", sa.String(500), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_invoices_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoices_subscription_id_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("provider_invoice_id", name=op.f("uq_invoices_provider_invoice_id")),
    )
    op.create_index("ix_invoices_org_id_created_at", "invoices", ["org_id", "created_at"])
    op.create_table(
        "usage_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_usage_events")),
    )
    op.create_index(
        "ix_usage_events_org_metric_occurred",
        "usage_events",
        ["org_id", "metric", "occurred_at"],
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )


def downgrade() -> None:
    op.drop_table("stripe_events")
    op.drop_index("ix_usage_events_org_metric_occurred", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_index("ix_invoices_org_id_created_at", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("subscriptions")
    op.drop_table("plans")
