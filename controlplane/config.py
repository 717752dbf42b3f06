"""Settings, read from CP_* environment variables (and a .env file when present)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CP_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = REPO_ROOT / "var"
    # The only directory jobs copy files from to hosts (WARs, dumps, manifests); unset: `artifacts` in data_dir.
    artifacts_dir: Path | None = None
    database_url: str = ""
    secret_key: str = DEFAULT_SECRET_KEY
    token_ttl_minutes: int = Field(default=8 * 60, ge=1, le=30 * 24 * 60)
    bootstrap_admin_password: str = ""
    timezone: str = "Asia/Seoul"
    metrics_refresh_seconds: float = Field(default=60.0, gt=0)
    cookie_secure: bool = False
    cloud: str = Field(default="devcloud", max_length=64)
    clouds_yaml: Path | None = None
    # The durable engine (DBOS) that runs all long work. Its system database: by default a SQLite file beside the
    # app's (its own write lock), or the app's PostgreSQL database (DBOS keeps its tables in schema "dbos").
    workflows: bool = True
    workflows_database_url: str = ""
    workflows_executor_id: str = Field(default="local", max_length=64)  # unique per process sharing the database
    # At most this many migrations of one agency run at once, and this many create servers on one cloud at once.
    migration_agency_concurrency: int = Field(default=4, ge=1, le=100)
    migration_cloud_concurrency: int = Field(default=4, ge=1, le=100)
    # After its cutover a system keeps its legacy side this long (a wave may say otherwise), then it is retired.
    migration_soak_hours: float = Field(default=24.0, ge=0, le=24 * 90)
    # How often the engine looks at migrations held outside the queue (waiting, blocked, soaking) for one to go on.
    migration_wake_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Long work on the same engine: cloud applies (one per agency at once, this many in all) and playbook runs (jobs
    # and the migrations' configure, move-data, verify and cutover steps share this limit), across all processes.
    # The image migrated systems' servers boot from (the cloud's own name for it); flavors come from the cloud.
    migration_image: str = Field(default="debian-12", min_length=1, max_length=255)
    cloud_apply_concurrency: int = Field(default=2, ge=1, le=100)
    playbook_concurrency: int = Field(default=4, ge=1, le=100)
    # Request bodies are refused with 413 beyond these, before they are read: uploaded files (the imports), and
    # every other body (the largest real ones, a job of 200 hosts or a credential with its known_hosts, are < 1 MiB).
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024)
    max_request_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    # Older secret keys, comma-separated: sealed values still open with them (newest key first) until
    # `controlplane secrets rotate` has re-sealed everything under CP_SECRET_KEY; nothing is sealed with them.
    secret_key_previous: str = Field(default="", repr=False)
    # The client address of a login (its throttle) is the socket peer; behind a reverse proxy, name the header
    # the proxy writes (X-Forwarded-For) and the proxies' networks it is believed from (comma-separated CIDRs).
    trusted_proxy_header: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9-]*$")
    trusted_proxies: str = ""
    # The VC network: its catalogue's directory (rooms/ of the project), the networks room endpoints and bridges
    # may be in (comma-separated CIDRs: the prober sends to nothing else; by default this machine only, where the
    # seed catalogue's endpoints are: set it to the VC network's), and the probes' cycle and timeout.
    rooms_catalogue_dir: Path = REPO_ROOT / "rooms"
    rooms_allowed_networks: str = "127.0.0.0/8"
    rooms_probe_seconds: float = Field(default=60.0, ge=1, le=3600)
    rooms_probe_timeout: float = Field(default=2.0, gt=0, le=30)
    # How often the bridges and their rooms are reconciled (and how long a bridge may take to answer).
    rooms_reconcile_seconds: float = Field(default=300.0, ge=1, le=86400)
    rooms_bridge_timeout: float = Field(default=5.0, gt=0, le=60)
    # The agency whose cloud project runs the VC network's bridges, and the flavor of a bridge's server.
    rooms_operations_agency: str = Field(default="MOIS", pattern=r"^[A-Z][A-Z0-9_]{1,15}$")
    rooms_bridge_flavor: str = Field(default="small", min_length=1, max_length=255)
    # A live stream of the rooms' changes ends after this and the client reconnects (proxies drop long streams).
    rooms_stream_seconds: float = Field(default=300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_prod(self) -> Settings:
        if self.env == "prod":
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
                raise ValueError(
                    "CP_SECRET_KEY must be set to a random value of at least 32 characters when CP_ENV=prod"
                )
            if not self.database_url:
                raise ValueError("CP_DATABASE_URL must be set explicitly when CP_ENV=prod")
        return self

    @model_validator(mode="after")
    def _proxy_settings_go_together(self) -> Settings:
        networks = self.trusted_proxy_networks  # refuses a bad CIDR, naming it
        if bool(self.trusted_proxy_header) != bool(networks):
            # Either half alone is a mistake: a header believed from anywhere can be forged by any client, and
            # proxies without a header change nothing.
            raise ValueError("CP_TRUSTED_PROXY_HEADER and CP_TRUSTED_PROXIES must be set together")
        return self

    @model_validator(mode="after")
    def _rooms_networks_are_networks(self) -> Settings:
        if not self.rooms_networks:  # (reading them refuses a bad CIDR, naming it)
            raise ValueError("CP_ROOMS_ALLOWED_NETWORKS must name at least one network (CIDR)")
        return self

    @property
    def previous_secret_keys(self) -> tuple[str, ...]:
        """CP_SECRET_KEY_PREVIOUS as a list, without blanks, repeats or the current key."""
        keys: list[str] = []
        for key in (part.strip() for part in self.secret_key_previous.split(",")):
            if key and key != self.secret_key and key not in keys:
                keys.append(key)
        return tuple(keys)

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for part in (p.strip() for p in self.trusted_proxies.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"CP_TRUSTED_PROXIES: '{part[:64]}' is not an address or network (CIDR)") from None
        return tuple(networks)

    @property
    def rooms_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for part in (p.strip() for p in self.rooms_allowed_networks.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"CP_ROOMS_ALLOWED_NETWORKS: '{part[:64]}' is not an address or network (CIDR)") \
                    from None
        return tuple(networks)

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'controlplane.db'}"

    @property
    def effective_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def effective_workflows_database_url(self) -> str:
        if self.workflows_database_url:
            return self.workflows_database_url
        url = self.effective_database_url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            return f"sqlite:///{path.with_name(path.stem + '-workflows.db')}"
        return url

    @property
    def effective_clouds_yaml(self) -> Path | None:
        """The clouds.yaml to read: CP_CLOUDS_YAML, else the dev cloud's when it exists, else None
        (openstacksdk's own search: OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack)."""
        if self.clouds_yaml is not None:
            return self.clouds_yaml
        devcloud = self.data_dir / "devcloud" / "clouds.yaml"
        return devcloud if devcloud.is_file() else None

