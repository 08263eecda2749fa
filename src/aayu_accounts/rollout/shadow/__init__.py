"""Shadow writes (copy each write to the other store) and reconciliation of both stores."""
