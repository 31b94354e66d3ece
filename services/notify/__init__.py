"""The notify service: directory, matching, alerts, inboxes and delivery (see README.md)."""

#: The service's name: its consumer group, its producer name on events, its metrics label.
SERVICE = "notify"
