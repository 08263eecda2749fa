"""Health, metrics and alerting."""
