"""Drives a latchkey server through the Python client that openapi-python-client generated from
openapi/openapi.json, the way an integrator would: register, log in, read the account, refresh,
log out, and see the logged-out refresh token refused.

    python generated_client.py PACKAGE API_BASE_URL EMAIL PASSWORD

PACKAGE is the generated package's name (its parent folder on PYTHONPATH); API_BASE_URL ends in
`/api`. Every answer must come back parsed into the document's own models: a response the
generator dropped parses to None and fails here. Prints one line per step; any failure is an
exception (a traceback on stderr, exit status 1).
"""

import importlib
import sys
import uuid


def main() -> int:
    package, base_url, email, password = sys.argv[1:5]

    def load(module: str):
        return importlib.import_module(f"{package}.{module}")

    client_module = load("client")
    models = load("models")
    register = load("api.auth.register")
    login = load("api.auth.login")
    refresh = load("api.auth.refresh")
    logout = load("api.auth.logout")
    me = load("api.users.get_current_user")

    # Undocumented statuses raise instead of parsing to None.
    anonymous = client_module.Client(base_url=base_url, raise_on_unexpected_status=True)
    credentials = models.Credentials(email=email, password=password)

    registered = register.sync_detailed(
        client=anonymous, body=models.NewAccount(email=email, password=password)
    )
    assert registered.status_code == 201, (registered.status_code, registered.content)
    assert isinstance(registered.parsed, models.UserView), registered.parsed
    assert registered.parsed.email == email, registered.parsed
    assert isinstance(registered.parsed.id, uuid.UUID), registered.parsed
    print(f"register: 201 {type(registered.parsed).__name__} {registered.parsed.id}")

    pair = expect_pair("login", login.sync_detailed(client=anonymous, body=credentials), models)

    signed_in = client_module.AuthenticatedClient(
        base_url=base_url, token=pair.access_token, raise_on_unexpected_status=True
    )
    account = me.sync_detailed(client=signed_in)
    assert account.status_code == 200, (account.status_code, account.content)
    assert isinstance(account.parsed, models.UserView), account.parsed
    assert account.parsed.email == email, account.parsed
    assert account.parsed.id == registered.parsed.id, account.parsed
    print(f"me: 200 {type(account.parsed).__name__} {account.parsed.email}")

    renewed = expect_pair(
        "refresh",
        refresh.sync_detailed(
            client=anonymous, body=models.RefreshRequest(refresh_token=pair.refresh_token)
        ),
        models,
    )
    assert renewed.refresh_token != pair.refresh_token, "refresh rotates the refresh token"

    ended = logout.sync_detailed(
        client=anonymous, body=models.RefreshRequest(refresh_token=renewed.refresh_token)
    )
    assert ended.status_code == 204, (ended.status_code, ended.content)
    print("logout: 204")

    refused = refresh.sync_detailed(
        client=anonymous, body=models.RefreshRequest(refresh_token=renewed.refresh_token)
    )
    assert refused.status_code == 401, (refused.status_code, refused.content)
    assert isinstance(refused.parsed, models.ErrorBody), refused.parsed
    print(f"refresh after logout: 401 {type(refused.parsed).__name__} {refused.parsed.error}")
    return 0


def expect_pair(step: str, answer, models):
    """The typed token pair of a login or a refresh."""
    assert answer.status_code == 200, (step, answer.status_code, answer.content)
    pair = answer.parsed
    assert isinstance(pair, models.TokenPairView), (step, pair)
    assert pair.token_type == models.TokenType.BEARER, (step, pair.token_type)
    assert pair.access_token and pair.refresh_token, (step, pair)
    assert isinstance(pair.expires_in, int) and pair.expires_in > 0, (step, pair)
    assert isinstance(pair.refresh_expires_in, int) and pair.refresh_expires_in > 0, (step, pair)
    print(f"{step}: 200 {type(pair).__name__} token_type={pair.token_type}")
    return pair


if __name__ == "__main__":
    sys.exit(main())
