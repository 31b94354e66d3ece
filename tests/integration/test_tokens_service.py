"""A running service accepts the identity provider's RS256 tokens and refuses bad ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.auth import issue_token
from tests.support import JWT_SECRET, service_on_own_redis

ISSUER = "https://id.example.test"
AUDIENCE = "askdoc"
QUESTION = {
    "title": "Is there a treatment for facial asymmetry?",
    "body": "My face is asymmetrical; is there an injection?",
    "topics": ["facial-asymmetry"],
    "location": {"zip": "90012"},
}


def test_questions_checks_signature_issuer_audience_and_lifetime(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "alg": "RS256"}]}))

    def provider_token(lifetime_s: int = 3600, **extra: Any) -> str:
        now = int(time.time())
        body = {"sub": "p-rs", "role": "patient", "iat": now, "exp": now + lifetime_s}
        body |= {"iss": ISSUER, "aud": AUDIENCE, **extra}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "idp-1"})

    env = {
        "ASKDOC_JWT_JWKS_FILE": str(keys),
        "ASKDOC_JWT_ISSUER": ISSUER,
        "ASKDOC_JWT_AUDIENCE": AUDIENCE,
        "ASKDOC_JWT_MAX_LIFETIME_S": "7200",
    }
    with service_on_own_redis("questions", **env) as (_, service):

        def post(token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.post(f"{service.url}/questions", json=QUESTION, headers=headers)

        assert post(provider_token()).status_code == 201
        hs256 = issue_token(JWT_SECRET, "p-hs", "patient", issuer=ISSUER, audience=AUDIENCE)
        assert post(hs256).status_code == 201
        for bad in (
            provider_token(lifetime_s=3 * 3600),  # over the 2 h cap
            provider_token(iss="https://evil.example"),
            provider_token(aud="someone-else"),
            issue_token(JWT_SECRET, "p-hs", "patient"),  # no iss, no aud
        ):
            response = post(bad)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_token"
