"""Verifies a latchkey access token the way another service would: with the public keys from
the server's JWK Set, never with the server's secret.

    python verify_token.py JWKS_URL TOKEN [AUDIENCE] [ISSUER]

Prints the token's claims as JSON and exits 0, or prints why the token was refused and
exits 1. Needs PyJWT with its crypto extra: pip install "pyjwt[crypto]".
"""

import json
import sys

import jwt


def main() -> int:
    jwks_url, token = sys.argv[1], sys.argv[2]
    audience = sys.argv[3] if len(sys.argv) > 3 else "latchkey"
    issuer = sys.argv[4] if len(sys.argv) > 4 else "latchkey"
    keys = jwt.PyJWKClient(jwks_url)
    try:
        # The key is the one the token's `kid` names; its algorithm is the key's, never the
        # token's own choice.
        key = keys.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "sid"]},
        )
    except jwt.PyJWTError as error:
        print(f"refused: {type(error).__name__}: {error}")
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
