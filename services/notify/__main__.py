"""Start the notify service: `python -m services.notify`."""

from shared.service import serve

from . import SERVICE
from .app import DEFAULT_PORT, create_app
from .settings import NotifySettings

if __name__ == "__main__":
    settings = NotifySettings()
    serve(create_app(settings), settings, DEFAULT_PORT, SERVICE)
