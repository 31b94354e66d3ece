"""The questions service."""
