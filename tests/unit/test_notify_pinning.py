"""Webhook requests go to the address that passed the SSRF check (no second lookup)."""

from __future__ import annotations

from services.notify.delivery.webhook import pin


def test_http_webhook_is_sent_to_the_checked_address_with_the_original_host() -> None:
    url, extensions, host = pin("http://hooks.example.com:8080/askdoc?x=1", "93.184.216.34")
    assert url == "http://93.184.216.34:8080/askdoc?x=1"
    assert host == "hooks.example.com:8080"
    assert extensions == {}


def test_https_webhook_keeps_the_host_name_for_tls_verification() -> None:
    url, extensions, host = pin(
        "https://hooks.example.com/in", "2606:2800:220:1:248:1893:25c8:1946"
    )
    assert url == "https://[2606:2800:220:1:248:1893:25c8:1946]/in"
    assert extensions == {"sni_hostname": "hooks.example.com"}
    assert host == "hooks.example.com"
