"""askdoc: the project's contracts and plumbing (no service business logic)."""
