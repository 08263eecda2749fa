"""X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from aayu_accounts.kit.asgi import parse_networks, resolve_client_ip

TRUSTED = parse_networks(["10.0.0.0/8"])


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert resolve_client_ip("203.0.113.9", "1.2.3.4", []) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert resolve_client_ip("203.0.113.9", "1.2.3.4", TRUSTED) == "203.0.113.9"


def test_forwarded_for_from_a_trusted_proxy_is_believed() -> None:
    assert resolve_client_ip("10.0.0.5", "198.51.100.7", TRUSTED) == "198.51.100.7"


def test_a_client_cannot_spoof_by_prepending_its_own_header() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address.
    assert resolve_client_ip("10.0.0.5", "1.1.1.1, 198.51.100.7", TRUSTED) == "198.51.100.7"


def test_chains_of_trusted_proxies_are_skipped() -> None:
    assert resolve_client_ip("10.0.0.5", "198.51.100.7, 10.1.1.1", TRUSTED) == "198.51.100.7"


def test_garbage_in_the_header_falls_back_to_the_peer() -> None:
    assert resolve_client_ip("10.0.0.5", "not-an-ip", TRUSTED) == "10.0.0.5"
