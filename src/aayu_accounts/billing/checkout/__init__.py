"""Billing: Stripe's hosted pages (customer portal, Checkout)."""
