"""Delivery: the outbox worker and its channels (webhook, e-mail); runs in notify or alone."""
