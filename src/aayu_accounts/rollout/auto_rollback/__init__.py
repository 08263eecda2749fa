"""The auto-rollback monitor: watches the new path and rolls it back on a sustained breach."""
