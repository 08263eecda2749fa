"""policy (identity)."""
