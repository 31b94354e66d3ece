"""Settings of the web service (ASKDOC_* environment variables, on top of the shared ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.settings import Settings


class WebSettings(Settings):
    """Where the four services are, and how sessions behave."""

    questions_url: str = Field("http://127.0.0.1:8001", description="questions service base URL")
    answers_url: str = Field("http://127.0.0.1:8002", description="answers service base URL")
    votes_url: str = Field("http://127.0.0.1:8003", description="votes service base URL")
    notify_url: str = Field("http://127.0.0.1:8004", description="notify service base URL")
    environment: Literal["development", "test", "production"] = Field(
        "development", description="production refuses the development sign-in"
    )
    web_dev_login: bool = Field(False, description="offer 'sign in as' the demo users")
    session_secret: SecretStr | None = Field(
        None, min_length=32, description="signs session cookies (default: derived from the JWT one)"
    )
    session_ttl_s: int = Field(8 * 3600, ge=60, description="how long a session cookie lives")
    secure_cookies: bool = Field(False, description="mark the session cookie Secure (HTTPS)")
    backend_timeout_s: float = Field(5.0, gt=0, description="timeout of a call to a service")
    dev_token_ttl_s: int = Field(8 * 3600, ge=60, description="life of a dev sign-in token")
    web_page_fresh_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="how long a visitor's question page is served from the web's shared "
        "page cache without asking the questions service (0: revalidate every read)",
    )
    web_inbox_page_size: int = Field(
        30, ge=1, le=100, description="alerts on one page of the inbox (older ones on the next)"
    )
    web_page_cache_entries: int = Field(
        2000, ge=0, description="question pages the shared page cache holds at most"
    )
    web_page_cache_mb: float = Field(
        64.0, ge=0, description="megabytes of HTML the shared page cache holds at most"
    )

    @model_validator(mode="after")
    def _no_dev_login_in_production(self) -> WebSettings:
        # A "sign in as anyone" button must never reach real users.
        if self.web_dev_login and self.environment == "production":
            raise ValueError(
                "ASKDOC_WEB_DEV_LOGIN=true is refused when ASKDOC_ENVIRONMENT=production"
            )
        return self
