"""The askdoc command line: development, operations and dead letters."""
