"""Signed service requests (API.md, *Service requests*): verification and its middleware."""
