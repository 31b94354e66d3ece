"""The answers service."""
