"""invitation (identity)."""
