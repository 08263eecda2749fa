"""Outgoing email: an outbox table, templates, and delivery through the durable job system."""
