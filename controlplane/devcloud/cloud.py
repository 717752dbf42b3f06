"""DevCloud: install, configure, start and stop a real OpenStack on 127.0.0.1 whose servers are nspawn hosts.

Keystone, Glance, Placement, Nova (api, conductor, scheduler, compute with the project's nspawn driver, which also
enforces security groups on its hosts) and Neutron (ml2 without agents, the project's binding driver), on a private
MariaDB and RabbitMQ of its own (own ports, data in the state directory) so the machine's servers are never touched.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.devcloud import admin_group, configs
from controlplane.devcloud.configs import ConfigContext, Ports, Secrets
from controlplane.devcloud.processes import DevCloudError, Service, Supervisor, port_open

if TYPE_CHECKING:
    from controlplane.devcloud.hosts import HostManager

Progress = Callable[[str], None]

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
CLOUD_NAME = "devcloud"
DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron")
INFRA = ("mariadb", "epmd", "rabbitmq")
APIS = ("keystone", "glance", "placement", "neutron", "nova-api")
NOVA_DAEMONS = ("nova-conductor", "nova-scheduler", "nova-compute")
SERVICE_NAMES = (*INFRA, *APIS, *NOVA_DAEMONS)


def default_cache_dir() -> Path:
    return Path(os.environ.get("CP_DEVCLOUD_CACHE_DIR") or Path.home() / ".cache" / "controlplane")


def default_state_dir() -> Path:
    data_dir = Path(os.environ.get("CP_DATA_DIR") or REPO_ROOT / "var")
    return Path(os.environ.get("CP_DEVCLOUD_STATE_DIR") or data_dir / "devcloud")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


class DevCloud:
    """One dev cloud per state directory; every public method is idempotent and holds the state lock."""

    cloud_name = CLOUD_NAME

    def __init__(self, state_dir: Path, cache_dir: Path, *, machine_servers: bool = False) -> None:
        self.state_dir = state_dir.resolve()
        self.cache_dir = cache_dir.resolve()
        self.ports = Ports()
        self.machine_servers = machine_servers
        self.supervisor = Supervisor(self.state_dir / "run", self.state_dir / "log")

    @classmethod
    def default(cls) -> DevCloud:
        servers = os.environ.get("CP_DEVCLOUD_SERVERS", "private")
        if servers not in ("private", "machine"):
            raise DevCloudError(f"CP_DEVCLOUD_SERVERS must be 'private' or 'machine', not {servers!r}")
        return cls(default_state_dir(), default_cache_dir(), machine_servers=servers == "machine")

    @property
    def service_names(self) -> tuple[str, ...]:
        """What this dev cloud runs: without its own MariaDB and RabbitMQ when it uses the machine's."""
        return SERVICE_NAMES[len(INFRA):] if self.machine_servers else SERVICE_NAMES

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def clouds_yaml(self) -> Path:
        return self.state_dir / "clouds.yaml"

    @property
    def venv(self) -> Path:
        requirements = (HERE / "requirements.txt").read_bytes()
        key = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:12]
        return self.cache_dir / f"openstack-venv-{key}"

    def _bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def _etc(self, *parts: str) -> Path:
        return self.state_dir.joinpath("etc", *parts)

    # -- public operations ---------------------------------------------------------------------------------------
    def up(self, progress: Progress | None = None) -> None:
        say = progress or (lambda _message: None)
        with self._locked():
            if self._all_running() and self.clouds_yaml.exists():
                say("dev cloud already running")
                return
            if shutil.which("nft") is None:
                raise DevCloudError("nft is missing (Debian package nftables): the hosts' security groups are "
                                    "nftables rules; scripts/setup installs it")
            # The hosts' root filesystem (debootstrap, ~45 s the first time) builds while OpenStack installs.
            with ThreadPoolExecutor(1) as pool:
                base = pool.submit(self._hosts().ensure_base)
                self._ensure_venv(say)
                self._start_openstack(say, base)

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop everything this dev cloud started (hosts included); `purge` also deletes its data.

        Raises DevCloudError naming anything that is still there afterwards (process, mount, namespace, link).
        """
        with self._locked():
            stopped = []
            for name in reversed(NOVA_DAEMONS + APIS):
                if self.supervisor.stop(name):
                    stopped.append(name)
            self._hosts().destroy_all()
            for name in reversed(INFRA if not self.machine_servers else ()):
                if self.supervisor.stop(name, timeout=60):
                    stopped.append(name)
            if left := self.leftovers():
                raise DevCloudError(f"still present after down: {', '.join(left)}")
            if purge:
                if self.machine_servers:  # the data live in the machine's MariaDB: drop exactly ours
                    statements = [f"DROP DATABASE IF EXISTS devcloud_{name};" for name in DATABASES]
                    self._run(["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root"], "drop the databases",
                              stdin="\n".join([*statements, "DROP USER IF EXISTS 'devcloud'@'127.0.0.1';"]))
                shutil.rmtree(self.state_dir, ignore_errors=True)
            return stopped

    def leftovers(self) -> list[str]:
        """What this dev cloud started that still exists: running services, hosts and their plumbing."""
        running = [f"service {s.name} (pid {s.pid})" for s in self.status() if s.running]
        return running + self._hosts().leftovers()

    def status(self) -> list[ServiceStatus]:
        ports = self._service_ports()
        return [ServiceStatus(name, self.supervisor.pid(name), ports.get(name)) for name in self.service_names]

    def stop_service(self, name: str) -> None:
        """Stop one service (fault injection in tests); `start_service` brings it back."""
        self._known(name)
        self.supervisor.stop(name)

    def start_service(self, name: str) -> None:
        self._known(name)
        services = self._services(self._config_context(), (name,))
        self._start(services)

    def env_exports(self) -> str:
        return f"export OS_CLIENT_CONFIG_FILE={self.clouds_yaml}\nexport OS_CLOUD={CLOUD_NAME}\n"

    # -- steps ---------------------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "devcloud.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _all_running(self) -> bool:
        return all(self.supervisor.pid(name) is not None for name in self.service_names)

    def _known(self, name: str) -> None:
        if name not in self.service_names:
            raise DevCloudError(f"unknown service {name!r}; one of: {', '.join(self.service_names)}")

    def _start_openstack(self, say: Progress, base: Future[Path]) -> None:
        """Configure and start everything in dependency order; `base` is the hosts' root filesystem being built."""
        self._install_drivers()
        ctx = self._config_context()
        self._write_configs(ctx)
        self._start_infra(ctx, say)
        self._ensure_schemas(ctx, say)
        say("starting keystone")
        self._start(self._services(ctx, ("keystone",)))
        # The service users must exist before Nova starts: nova-conductor exits without its placement user.
        self._seed(ctx, "catalog", say)
        if not base.done():
            say("waiting for the hosts' root filesystem (debootstrap, once)")
        base.result()
        say("starting glance, placement, neutron, nova")
        self._start(self._services(ctx, APIS[1:] + NOVA_DAEMONS))
        self._discover_compute(ctx, say)
        self._seed(ctx, "resources", say)
        say("seeding the cloud: the admin project's default security group")
        admin_group.seed(configs.KEYSTONE_URL, f"http://127.0.0.1:{ctx.ports.neutron}", ctx.secrets.admin_password)
        self.clouds_yaml.write_text(configs.clouds_yaml(ctx, CLOUD_NAME))
        self.clouds_yaml.chmod(0o600)
        say(f"dev cloud up: OS_CLIENT_CONFIG_FILE={self.clouds_yaml} OS_CLOUD={CLOUD_NAME}")

    def _ensure_venv(self, say: Progress) -> None:
        """The OpenStack virtualenv, built once per pinned set and reused (700 MB).

        uv (a dependency of the control plane) installs it in about 10 s from nothing; pip took ~115 s cold.
        """
        done = self.venv / ".complete"
        if done.exists():
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with (self.cache_dir / "openstack-venv.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if done.exists():
                return
            say(f"building the OpenStack virtualenv at {self.venv} (once)")
            shutil.rmtree(self.venv, ignore_errors=True)
            uv = str(Path(sys.executable).parent / "uv")
            base_python = getattr(sys, "_base_executable", sys.executable)
            self._run([uv, "venv", "--quiet", "--python", base_python, str(self.venv)],
                      "create the OpenStack virtualenv")
            self._run([uv, "pip", "install", "--quiet", "--python", self._bin("python"),
                       "-r", str(HERE / "requirements.txt")], "install OpenStack into its virtualenv")
            done.write_text("ok\n")

    def _site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def _install_drivers(self) -> None:
        """Put the project's drivers where Nova and Neutron look for them (cheap; redone on every start)."""
        site = self._site_packages()
        # Nova imports compute drivers only as nova.virt.<compute_driver>: a one-line shim points to ours.
        (site / "nova" / "virt" / "cp_nspawn.py").write_text(
            "from controlplane.devcloud.nova_driver import NspawnDriver  # noqa: F401\n"
        )
        # Neutron finds ML2 mechanism drivers by entry point; a minimal dist-info declares ours.
        shutil.copyfile(HERE / "neutron_binding.py", site / "cp_devcloud_binding.py")
        dist = site / "cp_devcloud_binding-1.0.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cp-devcloud-binding\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            "[neutron.ml2.mechanism_drivers]\ncp_bind = cp_devcloud_binding:BindEveryPortDriver\n"
        )
        (dist / "RECORD").write_text("")

    def _config_context(self) -> ConfigContext:
        secrets_file = self.state_dir / "secrets.json"
        if secrets_file.exists():
            cloud_secrets = Secrets(**json.loads(secrets_file.read_text()))
        else:
            cloud_secrets = Secrets(*(secrets.token_urlsafe(18) for _ in range(4)))
            secrets_file.touch(mode=0o600)
            secrets_file.write_text(json.dumps(asdict(cloud_secrets)))
        return ConfigContext(state_dir=self.state_dir, ports=self.ports, secrets=cloud_secrets,
                             machine_servers=self.machine_servers)

    def _write_configs(self, ctx: ConfigContext) -> None:
        files = {
            ("mariadb.cnf",): configs.mariadb_cnf(ctx),
            ("rabbitmq", "rabbitmq.conf"): configs.rabbitmq_conf(ctx),
            ("rabbitmq", "enabled_plugins"): "[].\n",
            ("rabbitmq", "rabbitmq-env.conf"): "",
            ("keystone", "keystone.conf"): configs.keystone_conf(ctx),
            ("glance", "glance-api.conf"): configs.glance_conf(ctx),
            ("placement", "placement.conf"): configs.placement_conf(ctx),
            ("nova", "nova.conf"): configs.nova_conf(ctx),
            ("neutron", "neutron.conf"): configs.neutron_conf(ctx),
            ("neutron", "plugins", "ml2", "ml2_conf.ini"): configs.ml2_conf(ctx),
        }
        for parts, text in files.items():
            path = self._etc(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(text)
        for service, paste in (("glance", "glance-api-paste.ini"), ("nova", "api-paste.ini"),
                               ("neutron", "api-paste.ini")):
            shutil.copyfile(self.venv / "etc" / service / paste, self._etc(service, paste))
        for directory in ("glance/images", "glance/staging", "glance/tasks", "nova/instances", "neutron",
                          "lock/glance", "lock/nova", "lock/neutron", "rabbitmq/mnesia", "rabbitmq/log", "wsgi",
                          "home", "mariadb"):
            (self.state_dir / directory).mkdir(parents=True, exist_ok=True)
        # gunicorn imports these; the services' own WSGI modules parse sys.argv, so reset it first.
        wsgi_modules = {
            "keystone": "keystone.wsgi.api", "glance": "glance.wsgi.api", "placement": "placement.wsgi.api",
            "nova_api": "nova.wsgi.osapi_compute", "neutron": "neutron.wsgi.api",
        }
        for name, module in wsgi_modules.items():
            (self.state_dir / "wsgi" / f"wsgi_{name}.py").write_text(
                f"import sys\n\nsys.argv = sys.argv[:1]\nfrom {module} import application  # noqa: E402,F401\n"
            )

    def _base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.state_dir / "home"),
            "PYTHONPATH": "",
            "VIRTUAL_ENV": str(self.venv),
        }

    def _services(self, ctx: ConfigContext, names: tuple[str, ...]) -> list[Service]:
        env = self._base_env()
        run = self.state_dir / "run"
        rabbit_env = {
            **env,
            "HOME": str(self.state_dir / "rabbitmq"),
            "RABBITMQ_NODENAME": "devcloud@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(ctx.ports.rabbitmq),
            "RABBITMQ_DIST_PORT": str(ctx.ports.rabbitmq_dist),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(ctx.ports.epmd),
            "RABBITMQ_CONF_ENV_FILE": str(self._etc("rabbitmq", "rabbitmq-env.conf")),
            "RABBITMQ_CONFIG_FILE": str(self._etc("rabbitmq", "rabbitmq.conf")),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._etc("rabbitmq", "enabled_plugins")),
            "RABBITMQ_MNESIA_BASE": str(self.state_dir / "rabbitmq" / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.state_dir / "rabbitmq" / "log"),
            "RABBITMQ_PID_FILE": str(run / "rabbitmq-node.pid"),
        }

        def api(name: str, port: int, module: str, config_env: dict[str, str], workers: str = "gthread") -> Service:
            # gthread: idle connections are kept 75 s, not gunicorn's 2 s, which the SDK's 2 s status polls met
            # just as the server closed them ("Remote end closed connection without response").
            worker_args = ("-w", "2", "-k", "sync") if workers == "sync" else ("-w", "1", "-k", "gthread",
                                                                             "--threads", "4", "--keep-alive", "75")
            return Service(name, (
                self._bin("gunicorn"), "--no-control-socket", *worker_args, "--timeout", "300",
                "-b", f"127.0.0.1:{port}", "--pythonpath", str(self.state_dir / "wsgi"), f"{module}:application",
            ), {**env, **config_env}, port=port, http=True)

        def nova(name: str, extra_env: dict[str, str] | None = None) -> Service:
            return Service(name, (self._bin(name), "--config-file", str(self._etc("nova", "nova.conf"))),
                           {**env, **(extra_env or {})})

        # Keystone needs sync workers: one threaded worker mixed up role assignments of concurrent requests.
        catalogue = {
            "mariadb": Service("mariadb", ("mariadbd", f"--defaults-file={self._etc('mariadb.cnf')}", "--user=root"),
                               env, port=ctx.ports.mariadb),
            "epmd": Service("epmd", ("epmd", "-port", str(ctx.ports.epmd), "-address", "127.0.0.1"), env,
                            port=ctx.ports.epmd),
            # Debian's /usr/sbin wrapper switches to the rabbitmq user, who cannot read the state directory.
            "rabbitmq": Service("rabbitmq", ("/usr/lib/rabbitmq/bin/rabbitmq-server",), rabbit_env,
                                port=ctx.ports.rabbitmq),
            "keystone": api("keystone", ctx.ports.keystone, "wsgi_keystone",
                            {"OS_KEYSTONE_CONFIG_FILES": str(self._etc("keystone", "keystone.conf"))}, "sync"),
            "glance": api("glance", ctx.ports.glance, "wsgi_glance",
                          {"OS_GLANCE_CONFIG_DIR": str(self._etc("glance"))}),
            "placement": api("placement", ctx.ports.placement, "wsgi_placement",
                             {"OS_PLACEMENT_CONFIG_DIR": str(self._etc("placement"))}),
            "neutron": api("neutron", ctx.ports.neutron, "wsgi_neutron",
                           {"OS_NEUTRON_CONFIG_DIR": str(self._etc("neutron")),
                            "OS_NEUTRON_CONFIG_FILES": "neutron.conf;plugins/ml2/ml2_conf.ini"}),
            "nova-api": api("nova-api", ctx.ports.nova, "wsgi_nova_api",
                            {"OS_NOVA_CONFIG_DIR": str(self._etc("nova"))}),
            "nova-conductor": nova("nova-conductor"),
            "nova-scheduler": nova("nova-scheduler"),
            # The nspawn driver lives in this repository and keeps its hosts under the state directory.
            "nova-compute": nova("nova-compute", {
                "PYTHONPATH": str(REPO_ROOT),
                "CP_DEVCLOUD_STATE_DIR": str(self.state_dir),
                "CP_DEVCLOUD_CACHE_DIR": str(self.cache_dir),
            }),
        }
        return [catalogue[name] for name in names]

    def _service_ports(self) -> dict[str, int]:
        ports = asdict(self.ports)
        return {"mariadb": ports["mariadb"], "epmd": ports["epmd"], "rabbitmq": ports["rabbitmq"],
                "keystone": ports["keystone"], "glance": ports["glance"], "placement": ports["placement"],
                "neutron": ports["neutron"], "nova-api": ports["nova"]}

    def _start(self, services: list[Service]) -> None:
        """Start all at once (they boot in parallel), then wait for each to answer."""
        for service in services:
            self.supervisor.start(service)
        for service in services:
            self.supervisor.wait_ready(service, timeout=180)

    def _start_infra(self, ctx: ConfigContext, say: Progress) -> None:
        """The private MariaDB and RabbitMQ (or the machine's), then the databases and their user."""
        if self.machine_servers:
            if not port_open(5672):
                raise DevCloudError("CP_DEVCLOUD_SERVERS=machine: no RabbitMQ answers on 127.0.0.1:5672")
            client = ["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root"]
        else:
            datadir = self.state_dir / "mariadb" / "data"
            if not (datadir / "mysql").exists():
                say("initialising the dev cloud's MariaDB")
                shutil.rmtree(datadir, ignore_errors=True)
                self._run(["mariadb-install-db", f"--defaults-file={self._etc('mariadb.cnf')}", "--user=root",
                           "--auth-root-authentication-method=socket", "--skip-test-db"], "initialise MariaDB")
            say("starting MariaDB and RabbitMQ")
            self._start(self._services(ctx, INFRA))
            client = ["mariadb", f"--socket={self.state_dir / 'run' / 'mariadb.sock'}", "-u", "root"]
        statements = [f"CREATE DATABASE IF NOT EXISTS {ctx.database_name(name)} CHARACTER SET utf8mb4;"
                      for name in DATABASES]
        statements += [
            f"CREATE USER IF NOT EXISTS 'devcloud'@'127.0.0.1' IDENTIFIED BY '{ctx.secrets.database_password}';",
            f"ALTER USER 'devcloud'@'127.0.0.1' IDENTIFIED BY '{ctx.secrets.database_password}';",
            *(f"GRANT ALL PRIVILEGES ON {ctx.database_name(name)}.* TO 'devcloud'@'127.0.0.1';"
              for name in DATABASES),
        ]
        self._run(client, "create databases", stdin="\n".join(statements))

    def _ensure_schemas(self, ctx: ConfigContext, say: Progress) -> None:
        """Database schemas and Keystone's bootstrap, once per virtualenv (their tools are idempotent anyway)."""
        marker = self.state_dir / f"schemas-{self.venv.name}-{'machine' if self.machine_servers else 'private'}.done"
        if marker.exists():
            return
        say("creating the OpenStack database schemas (once; about a minute)")
        keystone = ["--config-file", str(self._etc("keystone", "keystone.conf"))]
        for key_dir in ("fernet-keys", "credential-keys"):
            self._etc("keystone", key_dir).mkdir(mode=0o700, exist_ok=True)
        nova = ["--config-file", str(self._etc("nova", "nova.conf"))]
        steps: list[tuple[list[str], str]] = [
            ([self._bin("keystone-manage"), *keystone, "db_sync"], "keystone db_sync"),
            ([self._bin("keystone-manage"), *keystone, "fernet_setup", "--keystone-user", "root",
              "--keystone-group", "root"], "keystone fernet_setup"),
            ([self._bin("keystone-manage"), *keystone, "credential_setup", "--keystone-user", "root",
              "--keystone-group", "root"], "keystone credential_setup"),
            ([self._bin("keystone-manage"), *keystone, "bootstrap", "--bootstrap-region-id", configs.REGION,
              "--bootstrap-admin-url", f"{configs.KEYSTONE_URL}/v3/",
              "--bootstrap-internal-url", f"{configs.KEYSTONE_URL}/v3/",
              "--bootstrap-public-url", f"{configs.KEYSTONE_URL}/v3/"], "keystone bootstrap"),
            ([self._bin("glance-manage"), "--config-file", str(self._etc("glance", "glance-api.conf")), "db_sync"],
             "glance db_sync"),
            ([self._bin("placement-manage"), "--config-file", str(self._etc("placement", "placement.conf")),
              "db", "sync"], "placement db sync"),
            ([self._bin("neutron-db-manage"), "--config-file", str(self._etc("neutron", "neutron.conf")),
              "--config-file", str(self._etc("neutron", "plugins", "ml2", "ml2_conf.ini")), "upgrade", "heads"],
             "neutron upgrade heads"),
            ([self._bin("nova-manage"), *nova, "api_db", "sync"], "nova api_db sync"),
            ([self._bin("nova-manage"), *nova, "cell_v2", "map_cell0", "--database_connection",
              ctx.database_url("nova_cell0")], "nova map_cell0"),
        ]
        for argv, what in steps:
            # keystone-manage bootstrap reads the password from the environment, not from argv (visible in ps).
            self._run(argv, what, extra_env={"OS_BOOTSTRAP_PASSWORD": ctx.secrets.admin_password})
        # create_cell exits 2 when the same cell already exists: that is the idempotent outcome.
        self._run([self._bin("nova-manage"), *nova, "cell_v2", "create_cell", "--name", "cell1"], "nova create_cell",
                  ok_codes=(0, 2))
        self._run([self._bin("nova-manage"), *nova, "db", "sync"], "nova db sync")
        marker.write_text("ok\n")

    def _seed(self, ctx: ConfigContext, step: str, say: Progress) -> None:
        say(f"seeding the cloud: {step}")
        request = json.dumps({"step": step, "admin_password": ctx.secrets.admin_password,
                              "service_password": ctx.secrets.service_password, "ports": asdict(ctx.ports)})
        seed = REPO_ROOT / "scripts" / "devcloud_seed.py"
        self._run([self._bin("python"), str(seed)], f"seed {step}", stdin=request)

    def _discover_compute(self, ctx: ConfigContext, say: Progress, timeout: float = 120) -> None:
        """nova-compute registers itself after start; map it into cell1 so the scheduler can use it."""
        say("waiting for nova-compute to register")
        nova = [self._bin("nova-manage"), "--config-file", str(self._etc("nova", "nova.conf")), "cell_v2"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._run([*nova, "discover_hosts"], "nova discover_hosts")
            hosts = self._run([*nova, "list_hosts"], "nova list_hosts")
            if f" {ctx.compute_host} " in hosts:
                return
            for daemon in NOVA_DAEMONS:
                if self.supervisor.pid(daemon) is None:
                    raise DevCloudError(f"{daemon} exited; see {self.supervisor.log_file(daemon)}")
            time.sleep(2)
        raise DevCloudError(f"nova-compute did not register within {timeout:.0f} s; "
                            f"see {self.supervisor.log_file('nova-compute')}")

    def _run(self, argv: list[str], what: str, *, stdin: str | None = None, ok_codes: tuple[int, ...] = (0,),
             extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run(  # noqa: S603 - fixed argv built by the launcher
            argv, input=stdin, capture_output=True, text=True, check=False,
            env={**os.environ, **self._base_env(), **(extra_env or {})},
        )
        if result.returncode not in ok_codes:
            log = self.state_dir / "log" / "setup.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as out:
                out.write(f"--- {what} (exit {result.returncode})\n{result.stdout}\n{result.stderr}\n")
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise DevCloudError(f"{what} failed (exit {result.returncode}): {' | '.join(tail)}; see {log}")
        return result.stdout

    def _hosts(self) -> HostManager:
        from controlplane.devcloud.hosts import HostManager

        return HostManager(self.state_dir, self.cache_dir)
