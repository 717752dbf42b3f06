"""The dev cloud's configuration files, rendered from its ports, paths and generated passwords (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KEYSTONE_URL = "http://127.0.0.1:5000"
REGION = "RegionOne"
SERVICE_USERS = ("glance", "placement", "nova", "neutron")


@dataclass(frozen=True)
class Ports:
    mariadb: int = 3307
    epmd: int = 4371
    rabbitmq: int = 5673
    rabbitmq_dist: int = 25673
    keystone: int = 5000
    glance: int = 9292
    placement: int = 8778
    nova: int = 8774
    neutron: int = 9696


@dataclass(frozen=True)
class Secrets:
    """Generated once per dev cloud and kept in its state directory (mode 0600)."""

    admin_password: str
    database_password: str
    service_password: str
    rabbitmq_password: str


@dataclass(frozen=True)
class ConfigContext:
    state_dir: Path
    ports: Ports
    secrets: Secrets
    # False: private MariaDB and RabbitMQ of the dev cloud's own; True: the machine's (databases prefixed).
    machine_servers: bool = False
    compute_host: str = "devcloud"

    def database_name(self, name: str) -> str:
        return f"devcloud_{name}" if self.machine_servers else name

    def database_url(self, name: str) -> str:
        port = 3306 if self.machine_servers else self.ports.mariadb
        return (f"mysql+pymysql://devcloud:{self.secrets.database_password}@127.0.0.1:{port}/"
                f"{self.database_name(name)}")

    @property
    def transport_url(self) -> str:
        if self.machine_servers:
            return "rabbit://guest:guest@127.0.0.1:5672/"
        return f"rabbit://devcloud:{self.secrets.rabbitmq_password}@127.0.0.1:{self.ports.rabbitmq}/"

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)


def _service_auth(ctx: ConfigContext, section: str, username: str) -> str:
    return f"""[{section}]
auth_url = {KEYSTONE_URL}
www_authenticate_uri = {KEYSTONE_URL}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {username}
password = {ctx.secrets.service_password}
region_name = {REGION}
"""


def mariadb_cnf(ctx: ConfigContext) -> str:
    return f"""[mysqld]
datadir = {ctx.path("mariadb", "data")}
socket = {ctx.path("run", "mariadb.sock")}
pid-file = {ctx.path("run", "mariadbd.pid")}
bind-address = 127.0.0.1
port = {ctx.ports.mariadb}
innodb_buffer_pool_size = 64M
performance_schema = OFF
max_connections = 500
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
"""


def rabbitmq_conf(ctx: ConfigContext) -> str:
    return f"""listeners.tcp.1 = 127.0.0.1:{ctx.ports.rabbitmq}
# Applied when the node first boots with an empty database.
default_user = devcloud
default_pass = {ctx.secrets.rabbitmq_password}
log.console = true
log.file = false
"""


def keystone_conf(ctx: ConfigContext) -> str:
    return f"""[DEFAULT]
use_stderr = true
[database]
connection = {ctx.database_url("keystone")}
[token]
provider = fernet
[fernet_tokens]
key_repository = {ctx.path("etc", "keystone", "fernet-keys")}
[fernet_receipts]
key_repository = {ctx.path("etc", "keystone", "fernet-keys")}
[credential]
key_repository = {ctx.path("etc", "keystone", "credential-keys")}
"""


def glance_conf(ctx: ConfigContext) -> str:
    return f"""[DEFAULT]
use_stderr = true
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:{ctx.ports.glance}
[database]
connection = {ctx.database_url("glance")}
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {ctx.path("glance", "images")}
[os_glance_staging_store]
filesystem_store_datadir = {ctx.path("glance", "staging")}
[os_glance_tasks_store]
filesystem_store_datadir = {ctx.path("glance", "tasks")}
[paste_deploy]
flavor = keystone
config_file = {ctx.path("etc", "glance", "glance-api-paste.ini")}
[oslo_concurrency]
lock_path = {ctx.path("lock", "glance")}
{_service_auth(ctx, "keystone_authtoken", "glance")}"""


def placement_conf(ctx: ConfigContext) -> str:
    return f"""[DEFAULT]
use_stderr = true
[placement_database]
connection = {ctx.database_url("placement")}
[api]
auth_strategy = keystone
{_service_auth(ctx, "keystone_authtoken", "placement")}"""


def nova_conf(ctx: ConfigContext) -> str:
    return f"""[DEFAULT]
use_stderr = true
host = {ctx.compute_host}
my_ip = 127.0.0.1
transport_url = {ctx.transport_url}
compute_driver = cp_nspawn.NspawnDriver
state_path = {ctx.path("nova")}
instances_path = {ctx.path("nova", "instances")}
# Restart the nspawn hosts of running servers when nova-compute starts again (after `devcloud down`/`up`).
resume_guests_state_on_host_boot = true
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = {ctx.path("etc", "nova", "api-paste.ini")}
[api_database]
connection = {ctx.database_url("nova_api")}
[database]
connection = {ctx.database_url("nova")}
[conductor]
workers = 1
[scheduler]
workers = 1
[vnc]
enabled = false
[oslo_concurrency]
lock_path = {ctx.path("lock", "nova")}
[oslo_messaging_notifications]
driver = noop
[service_user]
send_service_user_token = true
{_service_auth(ctx, "service_user", "nova").removeprefix("[service_user]")}
{_service_auth(ctx, "keystone_authtoken", "nova")}
{_service_auth(ctx, "placement", "nova")}
{_service_auth(ctx, "neutron", "nova")}
"""


def neutron_conf(ctx: ConfigContext) -> str:
    return f"""[DEFAULT]
use_stderr = true
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {ctx.transport_url}
state_path = {ctx.path("neutron")}
api_paste_config = {ctx.path("etc", "neutron", "api-paste.ini")}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = {ctx.database_url("neutron")}
[oslo_concurrency]
lock_path = {ctx.path("lock", "neutron")}
[oslo_messaging_notifications]
driver = noop
{_service_auth(ctx, "keystone_authtoken", "neutron")}
{_service_auth(ctx, "nova", "nova")}"""


def ml2_conf(_ctx: ConfigContext) -> str:
    return """[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
# No agents: the project's own driver binds every port (controlplane/devcloud/neutron_binding.py).
mechanism_drivers = cp_bind
extension_drivers = port_security
[ml2_type_vxlan]
vni_ranges = 1:4000
[securitygroup]
enable_security_group = true
firewall_driver = noop
"""


def clouds_yaml(ctx: ConfigContext, cloud_name: str) -> str:
    return f"""# Written by `controlplane devcloud up`: the local dev cloud, as its admin.
clouds:
  {cloud_name}:
    auth:
      auth_url: {KEYSTONE_URL}/v3
      username: admin
      password: "{ctx.secrets.admin_password}"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    identity_api_version: 3
    interface: public
"""
