"""auth session (identity)."""
