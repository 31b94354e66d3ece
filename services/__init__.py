"""The four askdoc services."""
