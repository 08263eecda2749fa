"""audit intake: deferred linking of the hash chain (AAYU_AUDIT_APPEND_MODE=deferred)

Revision ID: 0010_audit_intake
Revises: 0009_mfa_enrollment_required
Create Date: 2026-11-28 23:15:00

In the deferred append mode (PostgreSQL), ``audit.record`` inserts the event with its leaf hash
into ``audit_intake`` in the caller's transaction, without the chain lock; right after the
commit, ``audit_chain_link`` moves committed intake rows into ``audit_events`` in one
transaction under the chain lock, linking each to the head (audit/linker.py). Commits of the
actions therefore no longer queue behind one another (group commit works again), and one
linking transaction (one WAL flush) links a whole batch.

Intake rows can be neither updated nor deleted except by the linking function (the trigger
checks a transaction-local flag that only the function sets). Nothing changes for
``audit_events``: the inline mode and the linker append under the same lock and head, so both
can run side by side.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.models.base import UTCDateTime

revision: str = "0010_audit_intake"
down_revision: str | None = "0009_mfa_enrollment_required"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_INTAKE_GUARD = """
CREATE FUNCTION audit_intake_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
        AND current_setting('aayu.audit_linking', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_intake is append-only until linked: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

# SECURITY DEFINER (runs as the schema owner): the application role needs only SELECT and
# INSERT on audit_intake and EXECUTE on this function, so it cannot delete intake rows itself
# (docs/audit.md, grants). The same link as audit_chain_append (migration 0003),
# SHA-256(0x01 || previous || leaf), under the same advisory lock, so inline appends and
# linking never fork the chain. The SELECT after the lock is a new statement, so under READ
# COMMITTED it sees every intake row committed before the lock was granted; rows committed
# later wait for the next pass.
PG_LINK_FUNCTION = """
CREATE FUNCTION audit_chain_link(p_limit integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    head_sequence bigint;
    head_hash varchar;
    next_hash varchar;
    linked bigint[] := '{}';
    pending record;
BEGIN
    PERFORM pg_advisory_xact_lock(7017023239473161332);
    SELECT sequence, hash INTO head_sequence, head_hash
    FROM audit_events ORDER BY sequence DESC LIMIT 1;
    IF head_sequence IS NULL THEN
        head_sequence := 0;
        head_hash := repeat('0', 64);
    END IF;
    FOR pending IN SELECT * FROM audit_intake ORDER BY intake_id LIMIT p_limit LOOP
        head_sequence := head_sequence + 1;
        next_hash := encode(
            sha256(decode('01', 'hex') || decode(head_hash, 'hex') || pending.leaf), 'hex'
        );
        INSERT INTO audit_events (
            id, sequence, occurred_at, actor_kind, actor_id, org_id, action, target_type,
            target_id, outcome, ip, user_agent, request_id, details, hash_version, prev_hash,
            hash
        ) VALUES (
            pending.id, head_sequence, pending.occurred_at, pending.actor_kind,
            pending.actor_id, pending.org_id, pending.action, pending.target_type,
            pending.target_id, pending.outcome, pending.ip, pending.user_agent,
            pending.request_id, pending.details, pending.hash_version, head_hash, next_hash
        );
        head_hash := next_hash;
        linked := linked || pending.intake_id;
    END LOOP;
    IF cardinality(linked) > 0 THEN
        PERFORM set_config('aayu.audit_linking', 'on', true);
        DELETE FROM audit_intake WHERE intake_id = ANY(linked);
        PERFORM set_config('aayu.audit_linking', 'off', true);
    END IF;
    RETURN cardinality(linked);
END
$$
"""

PG_STATEMENTS = (
    PG_INTAKE_GUARD,
    "CREATE TRIGGER audit_intake_append_only BEFORE UPDATE OR DELETE ON audit_intake "
    "FOR EACH ROW EXECUTE FUNCTION audit_intake_guard()",
    "CREATE TRIGGER audit_intake_no_truncate BEFORE TRUNCATE ON audit_intake "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_intake_guard()",
    PG_LINK_FUNCTION,
)


def upgrade() -> None:
    op.create_table(
        "audit_intake",
        sa.Column("intake_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("id", sa.String(36), nullable=False),
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
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("intake_id", name=op.f("pk_audit_intake")),
        sa.UniqueConstraint("id", name=op.f("uq_audit_intake_id")),
        sa.CheckConstraint("length(leaf) = 32", name=op.f("ck_audit_intake_leaf_length")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_chain_link(integer)")
        op.execute("DROP TRIGGER IF EXISTS audit_intake_no_truncate ON audit_intake")
        op.execute("DROP TRIGGER IF EXISTS audit_intake_append_only ON audit_intake")
        op.execute("DROP FUNCTION IF EXISTS audit_intake_guard()")
    op.drop_table("audit_intake")
