"""Inboxes: notifications by recipient, read over HTTP and the live SSE stream."""
