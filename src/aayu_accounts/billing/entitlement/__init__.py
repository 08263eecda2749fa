"""Billing: entitlement."""
