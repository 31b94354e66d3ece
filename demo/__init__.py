"""The seed-page demo (`make demo`)."""
