"""Backups and restores of the service's database (the rollback procedure's step 2)."""
