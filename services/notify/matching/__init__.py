"""Matching a question to doctors: the outward ring search and the ranking rules."""
