"""Billing: stripe_webhook."""
