"""API rate limits with the ``limits`` package: Redis when configured, in-process otherwise."""
