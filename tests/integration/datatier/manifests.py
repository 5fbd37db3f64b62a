"""The database settings the manifests give, mapped onto this machine's servers.

``pgbouncer_config`` reads the ini of the rendered ``pgbouncer-config`` ConfigMap: its aliases
(each ``host=... port=... dbname=...``) and its ``[pgbouncer]`` settings. ``database_environment``
is every ``HERALD_DB_*`` variable (and ``MIGRATE_DSN``) of the ``herald-config`` ConfigMap.
``rewrite_alias`` points an alias at a server and database of the test's own.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass

from herald_shared.settings import DatabaseSettings
from tests.deploy.pods import rewrite
from tests.deploy.rendered import config_data, one

OVERLAY = "production"
#: The PgBouncer the services connect to, as the manifests name it.
PGBOUNCER_ADDRESS = "pgbouncer:6432"


@dataclass(frozen=True, slots=True)
class PgBouncerConfig:
    #: alias → its connection string, as the manifests write it.
    databases: dict[str, str]
    #: the ``[pgbouncer]`` section.
    settings: dict[str, str]


def pgbouncer_config() -> PgBouncerConfig:
    ini = one(OVERLAY, "ConfigMap", "pgbouncer-config")["data"]["pgbouncer.ini"]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(ini)
    return PgBouncerConfig(dict(parser["databases"]), dict(parser["pgbouncer"]))


def alias_fields(connection: str) -> dict[str, str]:
    """``host=a port=5432 dbname=b`` as a dict."""
    return dict(part.split("=", 1) for part in connection.split())


def rewrite_alias(connection: str, *, host: str, port: int, dbname: str) -> str:
    fields = alias_fields(connection) | {"host": host, "port": str(port), "dbname": dbname}
    return " ".join(f"{name}={value}" for name, value in fields.items())


def database_environment(addresses: Mapping[str, str]) -> dict[str, str]:
    """The manifests' ``HERALD_DB_*`` and ``MIGRATE_DSN``, cluster addresses rewritten."""
    return {
        name: rewrite(value, addresses)
        for name, value in config_data(OVERLAY).items()
        if name.startswith("HERALD_DB_") or name == "MIGRATE_DSN"
    }


def database_settings(environment: Mapping[str, str]) -> DatabaseSettings:
    """``DatabaseSettings`` from exactly these variables (and the defaults for the rest)."""
    fields = {
        name.removeprefix("HERALD_DB_").lower(): value
        for name, value in environment.items()
        if name.startswith("HERALD_DB_")
    }
    return DatabaseSettings.model_validate(fields)
