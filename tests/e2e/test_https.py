"""The web port of a real ``telerad serve`` with TLS on and its self-signed certificate."""

from __future__ import annotations

import socket
import ssl

import pytest
import requests

from .conftest import ServerFactory, TeleradServer

pytestmark = [
    pytest.mark.e2e,
    # The TLS 1.1 client below names deprecated protocol versions on purpose.
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning"),
]
CONNECT_TIMEOUT = 10  # seconds


@pytest.fixture(scope="module")
def tls_server(module_server_factory: ServerFactory) -> TeleradServer:
    return module_server_factory.start(calling_ae_titles=["E2E_HTTPS"], http_tls=True)


def https_get(server: TeleradServer, context: ssl.SSLContext) -> tuple[str | None, str]:
    """Request ``/`` over TLS; return the negotiated TLS version and the HTTP status line."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=CONNECT_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status_line = connection.recv(4096).split(b"\r\n", 1)[0].decode("ascii", errors="replace")
            return connection.version(), status_line


def test_https_negotiates_tls_1_2_or_later(tls_server):
    # The first start wrote a self-signed certificate for 127.0.0.1 into the data folder.
    context = ssl.create_default_context(cafile=tls_server.data_dir / "tls" / "telerad.crt")

    version, status_line = https_get(tls_server, context)

    assert version in {"TLSv1.2", "TLSv1.3"}
    assert status_line.startswith("HTTP/1.1 ")


def test_https_rejects_tls_1_1(tls_server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # OpenSSL 3 offers TLS 1.1 only at security level 0. With it the client
    # sends a TLS 1.1 hello, which the server rejects with a protocol version
    # alert or by closing the connection. A client that cannot offer TLS 1.1
    # fails before sending anything, with "no ciphers available".
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1

    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNEXPECTED_EOF"):
        https_get(tls_server, context)


def https_session(server: TeleradServer) -> requests.Session:
    session = requests.Session()
    # Environment variables could swap the trusted CA or route through a proxy.
    session.trust_env = False
    session.verify = str(server.data_dir / "tls" / "telerad.crt")
    return session


def test_https_sends_hsts_and_secure_cookies(tls_server):
    tls_server.add_user("https-reader", "radiologist", password="a long enough password")
    session = https_session(tls_server)
    base = f"https://127.0.0.1:{tls_server.http_port}"

    login_page = session.get(f"{base}/login/", timeout=CONNECT_TIMEOUT)
    signed_in = session.post(
        f"{base}/login/",
        data={"username": "https-reader", "password": "a long enough password", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/login/"},
        allow_redirects=False,
        timeout=CONNECT_TIMEOUT,
    )

    assert login_page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert signed_in.status_code == 302
    cookies = {cookie.name: cookie for cookie in session.cookies}
    assert cookies["csrftoken"].secure
    assert cookies["sessionid"].secure
    assert cookies["sessionid"].has_nonstandard_attr("HttpOnly")
