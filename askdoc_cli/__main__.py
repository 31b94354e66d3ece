"""`python -m askdoc_cli`: the same as the `askdoc` console script."""

from askdoc_cli.main import app

if __name__ == "__main__":
    app(prog_name="askdoc")
