"""Start the web service: `python -m services.web`."""

from shared.service import serve

from .app import DEFAULT_PORT, SERVICE, create_app
from .settings import WebSettings

if __name__ == "__main__":
    settings = WebSettings()
    serve(create_app(settings), settings, DEFAULT_PORT, SERVICE)
