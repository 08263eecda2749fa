"""Feature flags: definitions, an immutable in-process snapshot, fan-out, admin service."""
