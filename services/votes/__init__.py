"""The votes service."""
