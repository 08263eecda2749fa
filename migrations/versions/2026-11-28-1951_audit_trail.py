"""audit trail

Revision ID: 0003_audit
Revises: 0002_keyring
Create Date: 2026-11-28 19:51:00

The audit table is append-only in the database itself, not only by convention in the code:
triggers refuse UPDATE (and TRUNCATE on PostgreSQL) always, and DELETE unless the archival job
holds a permit in its own transaction (see models/audit_archive_permit.py). Note for later
migrations: a SQLite batch-mode rebuild of ``audit_events`` drops these triggers; recreate them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.models.base import UTCDateTime

revision: str = "0003_audit"
down_revision: str | None = "0002_keyring"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_GUARD_FUNCTION = """
CREATE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_archive_permits WHERE through_sequence >= OLD.sequence
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

PG_TRUNCATE_FUNCTION = """
CREATE FUNCTION audit_events_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

# Appending under the chain lock in one round trip (audit/repository.py): the caller hashes the
# leaf beforehand, so the lock is held only for reading the head, linking and inserting. A
# VOLATILE PL/pgSQL function takes a new snapshot for each statement, so under READ COMMITTED
# the read after the lock sees the previous holder's committed event. The lock key is fixed
# forever (CHAIN_LOCK_KEY); the link is audit/chain.py's SHA-256(0x01 || previous || leaf).
PG_APPEND_FUNCTION = """
CREATE FUNCTION audit_chain_append(
    p_id varchar, p_occurred_at timestamptz, p_actor_kind varchar, p_actor_id varchar,
    p_org_id varchar, p_action varchar, p_target_type varchar, p_target_id varchar,
    p_outcome varchar, p_ip varchar, p_user_agent varchar, p_request_id varchar,
    p_details json, p_hash_version smallint, p_leaf bytea,
    OUT new_sequence bigint, OUT new_prev_hash varchar, OUT new_hash varchar
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF length(p_leaf) <> 32 THEN
        RAISE EXCEPTION 'audit leaf hash must be 32 bytes';
    END IF;
    PERFORM pg_advisory_xact_lock(7017023239473161332);
    SELECT sequence, hash INTO new_sequence, new_prev_hash
    FROM audit_events ORDER BY sequence DESC LIMIT 1;
    IF new_sequence IS NULL THEN
        new_sequence := 0;
        new_prev_hash := repeat('0', 64);
    END IF;
    new_sequence := new_sequence + 1;
    new_hash := encode(
        sha256(decode('01', 'hex') || decode(new_prev_hash, 'hex') || p_leaf), 'hex'
    );
    INSERT INTO audit_events (
        id, sequence, occurred_at, actor_kind, actor_id, org_id, action, target_type,
        target_id, outcome, ip, user_agent, request_id, details, hash_version, prev_hash, hash
    ) VALUES (
        p_id, new_sequence, p_occurred_at, p_actor_kind, p_actor_id, p_org_id, p_action,
        p_target_type, p_target_id, p_outcome, p_ip, p_user_agent, p_request_id, p_details,
        p_hash_version, new_prev_hash, new_hash
    );
END
$$
"""

PG_TRIGGERS = (
    PG_GUARD_FUNCTION,
    PG_TRUNCATE_FUNCTION,
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_guard()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_truncate()",
)

SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "WHEN NOT EXISTS (SELECT 1 FROM audit_archive_permits "
    "WHERE through_sequence >= OLD.sequence) "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END",
)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=True),
        sa.Column("org_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_type", sa.String(50), nullable=True),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("hash_version", sa.SmallInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("sequence", name=op.f("uq_audit_events_sequence")),
    )
    op.create_index("ix_audit_events_org_id_sequence", "audit_events", ["org_id", "sequence"])
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_table(
        "audit_archive_permits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("through_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_archive_permits")),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(PG_APPEND_FUNCTION)
    statements = PG_TRIGGERS if postgresql else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_refuse_truncate()")
        op.execute("DROP FUNCTION IF EXISTS audit_events_guard()")
        op.execute("DROP FUNCTION IF EXISTS audit_chain_append")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
    op.drop_table("audit_archive_permits")
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events")
    op.drop_index("ix_audit_events_org_id_sequence", table_name="audit_events")
    op.drop_table("audit_events")
