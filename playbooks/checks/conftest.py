"""testinfra checks of the roles: the role variables they read, per-host evidence, and small host helpers.

Each test module checks one role (its module attribute ROLE) on every host given with --hosts, reading the same
variables the playbook was given:

- the role's defaults (playbooks/roles/<role>/defaults/main.yml), then
- the JSON file of --check-vars (or $CP_CHECK_VARS): either a flat mapping of variables for every host, or
  {"vars": {...every host...}, "hosts": {"<address as in --hosts>": {...that host...}}}. A host whose variables
  hold `check_roles` (a list) is checked only for those roles; the other modules skip on it.

Templated defaults ("{{ postgresql_version }}") are rendered with the merged variables; those needing Ansible
facts stay as they are and the checks work them out from the host.

--evidence PATH writes every check's outcome per host as JSON, which the control plane stores:
{"hosts": {"10.78.0.5": {"passed": 12, "failed": 0, "skipped": 1, "checks": [{"role", "check", "outcome",
"duration", "message"}]}}, "passed": true}.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"
_RENDER_PASSES = 5


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("controlplane role checks")
    group.addoption("--check-vars", dest="check_vars", default=os.environ.get("CP_CHECK_VARS"),
                    help="JSON file of the variables the playbook was given (default: $CP_CHECK_VARS)")
    group.addoption("--evidence", dest="evidence", default=None,
                    help="write per-host results of every check to this JSON file")


def _given_vars(config: pytest.Config) -> dict[str, Any]:
    path = config.getoption("check_vars")
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise pytest.UsageError(f"--check-vars {path}: expected a JSON object")
    return data


def _host_vars(given: dict[str, Any], address: str) -> dict[str, Any]:
    if "hosts" in given or "vars" in given:
        return {**given.get("vars", {}), **given.get("hosts", {}).get(address, {})}
    return dict(given)


def _render(merged: dict[str, Any]) -> dict[str, Any]:
    """Templated string defaults rendered against the merged variables; anything needing facts stays raw."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - config text
    env.filters.setdefault("bool", lambda value: str(value).lower() in ("1", "true", "yes", "on"))
    result = dict(merged)

    def render(value: Any) -> Any:
        if isinstance(value, str) and "{{" in value:
            try:
                return env.from_string(value).render(result)
            except jinja2.TemplateError:
                return value
        if isinstance(value, list):
            return [render(item) for item in value]
        if isinstance(value, dict):
            return {key: render(item) for key, item in value.items()}
        return value

    for _ in range(_RENDER_PASSES):
        rendered = {key: render(value) for key, value in result.items()}
        if rendered == result:
            break
        result = rendered
    return result


def merged_role_vars(config: pytest.Config, role: str, address: str) -> dict[str, Any]:
    defaults_file = ROLES_DIR / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    return _render({**defaults, **_host_vars(_given_vars(config), address)})


def _address(host: Any) -> str:
    return str(host.backend.get_hostname())


@pytest.fixture(scope="module")
def role(request: pytest.FixtureRequest) -> str:
    return str(request.module.ROLE)


@pytest.fixture(scope="module")
def role_vars(request: pytest.FixtureRequest, host: Any, role: str) -> dict[str, Any]:
    """The role's variables for this host, as the playbook saw them."""
    merged = merged_role_vars(request.config, role, _address(host))
    wanted = merged.get("check_roles")
    if wanted is not None and role not in wanted:
        pytest.skip(f"role {role} is not applied to {_address(host)}")
    return merged


# Helpers the check modules share ---------------------------------------------------------------------------


def http_get(host: Any, url: str, timeout: float = 10) -> tuple[int, str]:
    """GET from the host itself (its own loopback): (status, body). Status 0 when nothing answers."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen(sys.argv[1], timeout={timeout})\n"
        "    status, body = r.status, r.read()\n"
        "except urllib.error.HTTPError as e:\n"
        "    status, body = e.code, e.read()\n"
        "except OSError as e:\n"
        "    status, body = 0, str(e).encode()\n"
        "sys.stdout.write(str(status) + '\\n' + body.decode('utf-8', 'replace'))\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(url)}")
    status, _, body = out.partition("\n")
    return int(status), body


ANY_ADDRESS = ("", "*", "0.0.0.0", "::")  # noqa: S104 - names what a listener binds to, binds nothing


def is_listening(host: Any, port: int, address: str = "") -> bool:
    """A TCP listener on `address` (empty, 0.0.0.0, * or ::: any address) and port."""
    if address in ANY_ADDRESS:
        return bool(host.socket(f"tcp://0.0.0.0:{port}").is_listening
                    or host.socket(f"tcp://:::{port}").is_listening)
    if address == "localhost":
        return bool(host.socket(f"tcp://127.0.0.1:{port}").is_listening
                    or host.socket(f"tcp://::1:{port}").is_listening)
    return bool(host.socket(f"tcp://{address}:{port}").is_listening)


def literal(value: object) -> str:
    """An SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def psql(host: Any, sql: str, *, db: str = "postgres", port: int = 5432) -> str:
    """Run SQL as the postgres superuser through the local socket; unaligned, tuples only."""
    command = (f"runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -p {int(port)} "
               f"-d {shlex.quote(db)} -c {shlex.quote(sql)}")
    return str(host.check_output(command)).strip()


# Evidence -------------------------------------------------------------------------------------------------


class _Evidence:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.hosts: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            callspec = getattr(item, "callspec", None)
            host = callspec.params.get("_testinfra_host") if callspec else None
            address = _address(host) if host is not None else "local"
            entry = self.hosts.setdefault(address, {"passed": 0, "failed": 0, "skipped": 0, "checks": []})
            state = "passed" if report.passed else "skipped" if report.skipped else "failed"
            entry[state] += 1
            message = ""
            if report.skipped and isinstance(report.longrepr, tuple):
                message = str(report.longrepr[2])
            elif report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                message = crash.message if crash is not None else str(report.longrepr)
            entry["checks"].append({
                "role": getattr(item.module, "ROLE", None),
                "check": item.originalname if isinstance(item, pytest.Function) else item.name,
                "outcome": state,
                "duration": round(report.duration, 3),
                "message": message[:1000],
            })

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        document = {
            "hosts": self.hosts,
            "passed": exitstatus == 0 and all(h["failed"] == 0 for h in self.hosts.values()),
            "duration": round(time.time() - self.started, 3),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(document, indent=2, sort_keys=True))


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("evidence")
    if path:
        config.pluginmanager.register(_Evidence(Path(path)), "controlplane-evidence")
