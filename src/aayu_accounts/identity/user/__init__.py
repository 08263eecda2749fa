"""user (identity)."""
