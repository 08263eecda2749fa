"""membership (identity)."""
