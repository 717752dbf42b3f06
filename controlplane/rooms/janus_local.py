"""LocalJanus: a real Janus (Debian's package) on one address of this machine, for tests and local development.

The Debian configuration (/etc/janus) is copied into a directory of ours and rewritten as
shared/recipes/bridge-sip-monitoring-browser.md says: our admin secret (never Janus's well-known default), the
transports other than HTTP and the plugins the bridge does not need disabled, the videoroom without its stock
rooms (1234, 5678), the HTTP and admin APIs bound to `address` only, media on `rtp_port_range` and on the
interfaces of `ice_enforce_list`. Janus runs in the foreground as our child and is stopped by its PID.

Media note: Janus never gathers ICE candidates on loopback, and an `ice_enforce_list` that matches nothing falls
back to every interface. Media tests therefore run Janus on a veth address inside a network namespace (see the
recipe) and pass that address; the API alone works on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from controlplane.rooms.janus import BridgeFailure, BridgeUnreachable, JanusBridge

JANUS = Path("/usr/bin/janus")
DEBIAN_CONFIG = Path("/etc/janus")
DISABLED_TRANSPORTS = ("libjanus_websockets.so", "libjanus_mqtt.so", "libjanus_nanomsg.so", "libjanus_rabbitmq.so",
                       "libjanus_pfunix.so")
DISABLED_PLUGINS = ("libjanus_streaming.so", "libjanus_sip.so", "libjanus_nosip.so", "libjanus_lua.so",
                    "libjanus_duktape.so", "libjanus_voicemail.so", "libjanus_recordplay.so", "libjanus_audiobridge.so",
                    "libjanus_textroom.so", "libjanus_echotest.so", "libjanus_videocall.so")
# Never <= 30 s with the HTTP transport: its long poll, the keepalive of browsers, can be idle for 30 s.
SESSION_TIMEOUT = 60


class LocalJanusError(RuntimeError):
    """Janus could not be configured or started; the message carries the tail of its log."""


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def jcfg_string(value: str) -> str:
    """A libconfig string literal."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("a Janus configuration string cannot hold control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jcfg_set(text: str, group: str, settings: dict[str, str]) -> str:
    """`text` (a Janus .jcfg file) with the top-level `group` holding `settings` (name -> libconfig literal): the
    group's own lines for those names go, the new ones come first; a missing group is added at the end."""
    lines = text.splitlines()
    opening = re.compile(rf"^{re.escape(group)}\s*[:=]\s*\{{\s*(\}}\s*;?)?\s*(#.*)?$")
    found = next(((index, match) for index, line in enumerate(lines) if (match := opening.match(line))), None)
    new = [f"\t{name} = {value}" for name, value in settings.items()]
    if found is None:
        return "\n".join([*lines, f"{group}: {{", *new, "}", ""])
    start, match = found
    if match.group(1):  # "group: {}" on one line
        lines[start:start + 1] = [f"{group}: {{", "}"]
    end = next(index for index in range(start + 1, len(lines)) if lines[index].startswith("}"))
    setting = re.compile(r"^\s*(" + "|".join(re.escape(name) for name in settings) + r")\s*[=:]")
    body = [line for line in lines[start + 1:end] if not setting.match(line)]
    return "\n".join([*lines[:start + 1], *new, *body, *lines[end:], ""])


class LocalJanus:
    """Janus on `address` (loopback by default). Ports given as 0 are picked (free ones) when this is made and kept
    across restarts, so a client made once reaches every start. A context manager: started on enter, stopped on
    exit."""

    def __init__(self, config_dir: Path, log_file: Path, *, address: str = "127.0.0.1", http_port: int = 0,
                 admin_port: int = 0, admin_secret: str, rtp_port_range: tuple[int, int] = (20000, 40000),
                 ice_enforce_list: str | None = None, executable: Path = JANUS, source_config: Path = DEBIAN_CONFIG,
                 start_timeout: float = 15.0) -> None:
        if not admin_secret:
            raise ValueError("admin_secret must be set (Janus's default is well known)")
        low, high = rtp_port_range
        if not 0 < low <= high <= 65535:
            raise ValueError("rtp_port_range must be (low, high) within 1-65535")
        self.config_dir = Path(config_dir)
        self.log_file = Path(log_file)
        self.address = address
        self.http_port = http_port or free_port(address)
        self.admin_port = admin_port or free_port(address)
        while self.admin_port == self.http_port:
            self.admin_port = free_port(address)
        self.__admin_secret = admin_secret
        self.rtp_port_range = (low, high)
        self.ice_enforce_list = ice_enforce_list or address
        self.executable = Path(executable)
        self.source_config = Path(source_config)
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalJanus(url={self.url!r}, admin_url={self.admin_url!r}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.http_port}/janus"

    @property
    def admin_url(self) -> str:
        return f"http://{self._host}:{self.admin_port}/admin"

    @property
    def _host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def pid(self) -> int | None:
        """The PID of the Janus we started while it runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def client(self, *, timeout: float = 5.0) -> JanusBridge:
        return JanusBridge(self.url, self.admin_url, self.__admin_secret, timeout=timeout)

    # -- configuration ------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Copy the Debian configuration into config_dir and rewrite it (done by every start)."""
        if not (self.source_config / "janus.jcfg").is_file():
            raise LocalJanusError(f"no Janus configuration at {self.source_config} (is Debian's janus installed?)")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.source_config, self.config_dir, dirs_exist_ok=True)
        low, high = self.rtp_port_range
        self._rewrite("janus.jcfg", {
            "general": {"configs_folder": jcfg_string(str(self.config_dir.resolve())),
                        "admin_secret": jcfg_string(self.__admin_secret),
                        "session_timeout": str(SESSION_TIMEOUT), "debug_colors": "false",
                        "server_name": jcfg_string("controlplane-local")},
            "media": {"rtp_port_range": jcfg_string(f"{low}-{high}")},
            "nat": {"ice_enforce_list": jcfg_string(self.ice_enforce_list)},
            "plugins": {"disable": jcfg_string(",".join(DISABLED_PLUGINS))},
            "transports": {"disable": jcfg_string(",".join(DISABLED_TRANSPORTS))},
            "events": {"broadcast": "false"},
        })
        self._rewrite("janus.transport.http.jcfg", {
            "general": {"http": "true", "https": "false", "ip": jcfg_string(self.address),
                        "port": str(self.http_port), "base_path": jcfg_string("/janus")},
            "admin": {"admin_http": "true", "admin_https": "false", "admin_ip": jcfg_string(self.address),
                      "admin_port": str(self.admin_port), "admin_base_path": jcfg_string("/admin")},
        })
        # The stock file pre-creates rooms 1234 and 5678: the bridge's rooms are the control plane's only.
        (self.config_dir / "janus.plugin.videoroom.jcfg").write_text("general: {}\n")
        (self.config_dir / "janus.jcfg").chmod(0o600)  # it holds the admin secret

    def _rewrite(self, name: str, groups: dict[str, dict[str, str]]) -> None:
        path = self.config_dir / name
        text = path.read_text()
        for group, settings in groups.items():
            text = jcfg_set(text, group, settings)
        path.write_text(text)

    # -- the process --------------------------------------------------------------------------------------------
    def start(self) -> LocalJanus:
        """Configure and start Janus and wait until its HTTP and admin APIs answer (a no-op while it runs)."""
        if self.pid is not None:
            return self
        if not os.access(self.executable, os.X_OK):
            raise LocalJanusError(f"{self.executable} is missing or not executable (Debian's janus package)")
        self.configure()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(self.executable), "-F", str(self.config_dir.resolve()), "-L", str(self.log_file.resolve()),
                "--disable-stdout", "--disable-colors", "--debug-timestamps"]
        with self.log_file.open("ab") as stderr:  # what Janus says outside its logger (a crash, GLib) goes there too
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argv
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        client = self.client(timeout=1.0)
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise LocalJanusError(f"janus exited while starting (status {code}); {self._log_tail()}")
            try:
                client.info()
                client.admin_check()
                return
            except BridgeUnreachable:
                pass
            except BridgeFailure as exc:
                raise LocalJanusError(f"janus at {self.url} answers wrongly: {exc}; {self._log_tail()}") from None
            if time.monotonic() > deadline:
                raise LocalJanusError(f"janus did not answer at {self.url} within {self.start_timeout:g} s; "
                                      f"{self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self, size: int = 2000) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - size))
                tail = log.read().decode(errors="replace")
        except OSError as exc:
            return f"its log {self.log_file} cannot be read ({exc.strerror})"
        return f"the end of its log {self.log_file}:\n{tail.replace(self.__admin_secret, '***')}"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the Janus we started, SIGKILL when it is still there after `timeout` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()

    def __enter__(self) -> LocalJanus:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
