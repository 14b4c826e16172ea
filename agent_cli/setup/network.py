"""What the setup container needs to reach package registries the way the host does: the host's
proxy settings, package index settings and CA bundle (a TLS-intercepting proxy's CA is the common
corporate case). Only the setup container gets them; the agent's container never does.

Credentials embedded in proxy or index URLs (`http://user:secret@proxy:3128`) reach setup only when
the user allowed it (`setup_credentials`, which a repository cannot set): setup runs the repository's
own code as root, as its tests do. Every credential is also handed to the redactor.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CA_IN_CONTAINER = "/etc/actsmith/ca-certificates.crt"
CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSDs
)
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
# Where each tool looks for the CA bundle we mount.
CA_TARGETS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
INDEX_VARIABLES = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_FIND_LINKS",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "NPM_CONFIG_REGISTRY",
    "YARN_REGISTRY",
    "GOPROXY",
    "GOPRIVATE",
    "GONOSUMDB",
    "GONOSUMCHECK",
)
PIP_CONFIG_KEYS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "trusted-host": "PIP_TRUSTED_HOST",
}


@dataclass(frozen=True)
class HostNetwork:
    environment: dict[str, str] = field(default_factory=dict)  # for the setup container only
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> path in the container, read-only
    secrets: tuple[str, ...] = ()  # credentials seen, to redact wherever they appear
    withheld: tuple[str, ...] = ()  # variables whose credentials were left out (setup_credentials off)


def host_network(environ: dict[str, str] | None = None, *, credentials: bool = False) -> HostNetwork:
    environ = dict(os.environ if environ is None else environ)
    environment: dict[str, str] = {}
    mounts: dict[str, str] = {}
    secrets: list[str] = []
    withheld: list[str] = []
    ca = ca_bundle(environ)
    if ca is not None:
        mounts[str(ca)] = CA_IN_CONTAINER
        environment.update({name: CA_IN_CONTAINER for name in CA_TARGETS})
    wanted = {**_pip_config(environ), **_present(environ, PROXY_VARIABLES, INDEX_VARIABLES)}
    for name, value in wanted.items():
        if _host_path(value):
            continue  # a folder of the host (a local find-links) means nothing in the container
        kept, secret = split_credentials(value)
        if secret:
            secrets.append(secret)
            if not credentials:
                withheld.append(name)
                value = kept
        environment[name] = value
        if name in PROXY_VARIABLES:
            environment[name.lower()] = value  # curl and others read only the lower-case form
    return HostNetwork(environment, mounts, tuple(secrets), tuple(withheld))


def ca_bundle(environ: dict[str, str]) -> Path | None:
    """The CA bundle the host trusts: the one its tools are pointed at, else the system's."""
    for name in CA_VARIABLES:
        value = environ.get(name)
        if value and Path(value).is_file():
            return Path(value).resolve()
    for candidate in CA_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def _present(environ: dict[str, str], *groups: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for group in groups:
        for name in group:
            value = environ.get(name) or environ.get(name.lower())
            if value:
                found[name] = value
    return found


def _pip_config(environ: dict[str, str]) -> dict[str, str]:
    """Index settings from pip's configuration files (the environment overrides them)."""
    home = Path(environ.get("HOME") or Path.home())
    files = ["/etc/pip.conf", str(home / ".config/pip/pip.conf"), str(home / ".pip/pip.conf")]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(environ["PIP_CONFIG_FILE"])
    found: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            for key, variable in PIP_CONFIG_KEYS.items():
                if parser.has_option(section, key):
                    found[variable] = " ".join(parser.get(section, key).split())
    return found


def _host_path(value: str) -> bool:
    return value.startswith("/") or value.startswith("file:")


def split_credentials(value: str) -> tuple[str, str | None]:
    """(the value without user:password@ in any URL it holds, the credentials found)."""
    kept, secret = [], None
    for part in value.split():
        try:
            url = urlsplit(part)
        except ValueError:
            kept.append(part)
            continue
        if url.password is None and url.username is None:
            kept.append(part)
            continue
        userinfo, _, host = url.netloc.rpartition("@")
        secret = userinfo
        kept.append(urlunsplit(url._replace(netloc=host)))
    return " ".join(kept), secret
