"""Start notify's delivery part alone: `python -m services.notify.delivery`."""

from shared.service import serve

from .. import SERVICE
from ..settings import NotifySettings
from .app import DEFAULT_PORT, create_delivery_app

if __name__ == "__main__":
    settings = NotifySettings()
    serve(create_delivery_app(settings), settings, DEFAULT_PORT, SERVICE)
