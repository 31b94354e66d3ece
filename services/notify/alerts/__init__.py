"""Alerts: question matches (delivered or held), digests, answer and vote milestones."""
