"""Fixtures of the crypto tests: the Vault and Azure Key Vault stand-ins."""

from tests.fixtures.secret_servers import azure_server, vault_server

__all__ = ["azure_server", "vault_server"]
