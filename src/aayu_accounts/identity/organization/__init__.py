"""organization (identity)."""
