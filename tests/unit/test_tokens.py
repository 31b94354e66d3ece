"""Token verification: lifetime cap, issuer and audience, RS256 with a provider's JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.auth import TokenPolicy, TokenVerifier, issue_token
from shared.errors import ApiError

SECRET = "unit-secret-0123456789abcdef0123456789"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(*pairs: tuple[str, rsa.RSAPrivateKey]) -> dict[str, Any]:
    keys = []
    for kid, key in pairs:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": keys}


def claims(lifetime_s: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u-1", "role": "patient", "iat": now, "exp": now + lifetime_s, **extra}


def rs256(key: rsa.RSAPrivateKey, kid: str, body: dict[str, Any]) -> str:
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def refused(verifier: TokenVerifier, token: str, code: str = "invalid_token") -> str:
    with pytest.raises(ApiError) as caught:
        verifier.verify(token)
    assert caught.value.status == 401 and caught.value.code == code
    return caught.value.message


@pytest.fixture(scope="module")
def idp_key() -> rsa.RSAPrivateKey:
    return rsa_key()


def test_a_token_within_the_lifetime_cap_is_accepted() -> None:
    verifier = TokenVerifier(SECRET, TokenPolicy(max_lifetime_s=86400))
    assert verifier.verify(issue_token(SECRET, "u-1", "doctor", ttl_s=86400)).role == "doctor"


def test_a_token_living_longer_than_the_cap_is_refused() -> None:
    verifier = TokenVerifier(SECRET, TokenPolicy(max_lifetime_s=86400))
    message = refused(verifier, issue_token(SECRET, "u-1", "patient", ttl_s=86401))
    assert "at most 86400 s" in message


def test_a_token_without_iat_is_refused() -> None:
    body = claims()
    del body["iat"]
    refused(TokenVerifier(SECRET), jwt.encode(body, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("sub", ["a:b", "x}", "with space", "-leading", "x" * 65, "é"])
def test_a_sub_that_is_not_an_id_is_refused(sub: str) -> None:
    # A sub ends up in key names (a vote's voter, an inbox): the ids' one pattern holds.
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    assert "not a valid id" in refused(TokenVerifier(SECRET), token)


@pytest.mark.parametrize("sub", ["dr-jon-a-perlman", "auth0|5f1c0e", "jane.doe@clinic", "u_1"])
def test_subs_of_identity_providers_are_ids(sub: str) -> None:
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    assert TokenVerifier(SECRET).verify(token).sub == sub


def test_issuer_and_audience_are_checked_when_set() -> None:
    verifier = TokenVerifier(SECRET, TokenPolicy(issuer="https://id.example", audience="askdoc"))
    good = issue_token(SECRET, "u-1", "patient", issuer="https://id.example", audience="askdoc")
    assert verifier.verify(good).sub == "u-1"
    refused(verifier, issue_token(SECRET, "u-1", "patient"))  # neither
    refused(
        verifier, issue_token(SECRET, "u-1", "patient", issuer="https://other", audience="askdoc")
    )
    refused(
        verifier, issue_token(SECRET, "u-1", "patient", issuer="https://id.example", audience="x")
    )


def test_without_issuer_and_audience_settings_tokens_need_neither() -> None:
    verifier = TokenVerifier(SECRET)
    assert verifier.verify(issue_token(SECRET, "u-1", "patient", audience="anything")).sub == "u-1"


def test_rs256_with_the_providers_jwks_beside_hs256(idp_key: rsa.RSAPrivateKey) -> None:
    other = rsa_key()
    jwks = jwt.PyJWKSet.from_dict(jwks_of(("k1", idp_key), ("k2", other)))
    verifier = TokenVerifier(SECRET, jwks=jwks)
    assert verifier.verify(rs256(idp_key, "k1", claims())).sub == "u-1"
    assert verifier.verify(rs256(other, "k2", claims(sub="u-2"))).sub == "u-2"
    assert verifier.verify(issue_token(SECRET, "u-3", "admin")).role == "admin"
    # Signed by a key the provider does not publish, or claiming another key's id.
    refused(verifier, rs256(rsa_key(), "k1", claims()))
    refused(verifier, rs256(idp_key, "k9", claims()))
    # The lifetime cap holds for the provider's tokens too.
    refused(verifier, rs256(idp_key, "k1", claims(lifetime_s=3 * 86400)))


def test_rs256_is_refused_without_keys_and_other_algorithms_always(
    idp_key: rsa.RSAPrivateKey,
) -> None:
    verifier = TokenVerifier(SECRET)
    refused(verifier, rs256(idp_key, "k1", claims()))
    refused(verifier, jwt.encode(claims(), SECRET * 2, algorithm="HS512"))
    refused(verifier, jwt.encode(claims(), None, algorithm="none"))


def test_an_hs256_token_signed_with_the_public_key_is_refused(idp_key: rsa.RSAPrivateKey) -> None:
    """Algorithm confusion: the provider's public key is never an HMAC secret."""
    jwks_dict = jwks_of(("k1", idp_key))
    verifier = TokenVerifier(SECRET, jwks=jwt.PyJWKSet.from_dict(jwks_dict))
    public_json = json.dumps(jwks_dict["keys"][0]).encode()
    # PyJWT will not sign this way, so the forgery is built by hand.
    signing_input = b".".join(
        _b64(json.dumps(part).encode())
        for part in ({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims())
    )
    signature = hmac.new(public_json, signing_input, hashlib.sha256).digest()
    refused(verifier, (signing_input + b"." + _b64(signature)).decode())


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def signed_by_hand(header: str, payload: str) -> str:
    """An HS256 token of exactly this header and payload JSON (PyJWT would re-encode them)."""
    signing_input = _b64(header.encode()) + b"." + _b64(payload.encode())
    signature = hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


HS256 = '{"alg":"HS256","typ":"JWT"}'


@pytest.mark.parametrize(
    "claim",
    [
        r'"name":"\ud800"',  # a lone surrogate: valid JSON, but no UTF-8 text
        r'"name":"Dr \udfff Who"',
        r'"nickname":"\udc00"',  # a claim askdoc does not read
        r'"\ud83d":1',  # in a key
        r'"address":{"street":["\ud800"]}',
    ],
)
def test_claims_that_are_not_unicode_text_are_refused(claim: str) -> None:
    now = int(time.time())
    payload = f'{{"sub":"u-1","role":"patient","iat":{now},"exp":{now + 60},{claim}}}'
    message = refused(TokenVerifier(SECRET), signed_by_hand(HS256, payload))
    assert message == "the bearer token's claims are not valid Unicode text"


@pytest.mark.parametrize("name", [{"first": "Ann"}, ["Ann"], 42, "x" * 121])
def test_a_name_that_is_not_short_text_is_refused(name: Any) -> None:
    token = jwt.encode(claims(name=name), SECRET, algorithm="HS256")
    assert "name must be text" in refused(TokenVerifier(SECRET), token)


def test_a_name_of_any_script_up_to_the_cap_is_accepted() -> None:
    name = "Dr Zoë Ngozi-Ōkubo 王医生 🩺".ljust(120, "x")
    token = jwt.encode(claims(name=name), SECRET, algorithm="HS256")
    assert TokenVerifier(SECRET).verify(token).name == name


@pytest.mark.parametrize(
    "token",
    [
        "not.a.jwt",
        signed_by_hand(HS256, '{"sub":'),
        signed_by_hand(HS256, '{"sub":"u-1","exp":1' + "0" * 5000 + "}"),
        signed_by_hand(HS256, '{"x":' + "[" * 5000 + "]" * 5000 + "}"),
        signed_by_hand('{"alg":', "{}"),
        _b64(b"\xff\xfe").decode() + "." + _b64(b"{}").decode() + ".c2ln",
    ],
)
def test_a_malformed_token_is_refused_plainly(token: str) -> None:
    """The reason names the token's form, not the JSON decoder's line and column."""
    message = refused(TokenVerifier(SECRET), token)
    assert "line 1" not in message and "char" not in message and "Expecting" not in message
    assert "malformed" in message or "padding" in message


def test_a_reason_quoting_the_tokens_own_bad_text_can_still_be_sent() -> None:
    # PyJWT names an unknown critical header as it found it: here a lone surrogate.
    token = signed_by_hand(r'{"alg":"HS256","crit":["\ud800"]}', '{"sub":"u-1"}')
    message = refused(TokenVerifier(SECRET), token)
    assert "critical" in message
    message.encode()  # a JSON reply and a log line encode it as UTF-8


@pytest.fixture
def jwks_url(idp_key: rsa.RSAPrivateKey) -> Iterator[str]:
    body = json.dumps(jwks_of(("k1", idp_key))).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_rs256_keys_fetched_from_a_jwks_url(jwks_url: str, idp_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(SECRET, jwks_url=jwks_url)
    token = rs256(idp_key, "k1", claims())
    assert verifier.fetches_keys(token)
    assert verifier.verify(token).sub == "u-1"
    assert not verifier.fetches_keys(token)  # verified once, cached until it expires
    refused(verifier, rs256(rsa_key(), "k1", claims()))
