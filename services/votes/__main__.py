"""Start the votes service: `python -m services.votes`."""

from shared.service import serve
from shared.settings import Settings

from .app import DEFAULT_PORT, create_app
from .service import SERVICE

if __name__ == "__main__":
    settings = Settings()
    serve(create_app(settings), settings, DEFAULT_PORT, SERVICE)
