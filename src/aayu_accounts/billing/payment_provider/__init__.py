"""Billing: payment_provider."""
