"""Keeps every dev cloud host's firewall in step with the security groups of its Neutron port.

Runs inside nova-compute (controlplane.devcloud.nova_driver starts it; standard library only otherwise). Every
`interval` seconds one read of Neutron (ports, security groups, address groups) gives each host's nft script
(controlplane.devcloud.firewall); a host whose script changed gets the new one in a single `nft -f` transaction.
Every `verify_every` rounds the table the kernel holds is compared with the one applied, so a table removed or
edited behind our back (the hosts themselves cannot: they run without CAP_NET_ADMIN) is put back.
Before a host boots, `enforce` loads its script at once, so no host ever runs unfiltered; when Neutron cannot be
asked then, the host starts with everything dropped and the next round that reaches Neutron opens what its groups
allow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.devcloud.firewall import NetworkState, Port, ruleset
from controlplane.devcloud.hosts import HostError, HostInfo, HostManager, host_name_for

LOG = logging.getLogger(__name__)
Fetch = Callable[[], NetworkState]


@dataclass(frozen=True)
class Applied:
    script: str
    listing: str  # the table as the kernel listed it right after
    asked: float  # when Neutron was asked for the state the script follows (time.monotonic)


def port_of(host: HostInfo, state: NetworkState) -> Port | None:
    """The port a host was built from: its server's port holding the host's address."""
    for port in state.ports:
        if port.device_id and host_name_for(port.device_id) == host.name and host.ip in port.fixed_ips:
            return port
    return None


class FirewallSync:
    def __init__(self, hosts: HostManager, fetch: Fetch, *, interval: float = 2.0, verify_every: int = 5) -> None:
        self.hosts = hosts
        self.fetch = fetch
        self.interval = interval
        self.verify_every = verify_every
        self._applied: dict[str, Applied] = {}
        self._lock = threading.Lock()  # one writer per host at a time: the loop and a booting host's enforce
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one host -----------------------------------------------------------------------------------------------
    def _apply(self, name: str, script: str, asked: float, *, verify: bool = False) -> bool:
        """Load `script` unless the host holds it already or a newer view of Neutron; True when it was loaded."""
        with self._lock:
            applied = self._applied.get(name)
            if applied is not None and applied.asked > asked:
                return False  # a booting host's enforce asked Neutron after this round did
            if applied is not None and applied.script == script and (
                    not verify or self.hosts.firewall_listing(name) == applied.listing):
                return False
            self._applied[name] = Applied(script, self.hosts.apply_firewall(name, script), asked)
            return True

    def _forget(self, name: str) -> None:
        with self._lock:
            self._applied.pop(name, None)

    def enforce(self, host: HostInfo) -> None:
        """The host's rules from Neutron now (it is about to boot); everything dropped when Neutron cannot say.

        Always loaded: the namespace may be new (a host built again under the same name) whatever was applied before.
        """
        self._forget(host.name)
        asked = time.monotonic()
        try:
            state = self.fetch()
        except Exception as exc:
            LOG.warning("firewall of host %s: Neutron did not answer (%s); everything is dropped until it does",
                        host.name, exc)
            self._apply(host.name, ruleset(None, NetworkState()), asked)
            self._forget(host.name)  # the next round loads what the groups allow
            return
        self._apply(host.name, ruleset(port_of(host, state), state), asked)

    # -- every host -----------------------------------------------------------------------------------------------
    def sync(self, *, verify: bool = False) -> int:
        """One round over every wired host; returns how many hosts got new rules. Raises when Neutron cannot say.

        Neutron is not asked while no host is wired. A host that appears during the round waits for the next one:
        it got its rules from `enforce` before it booted.
        """
        hosts = [host for host in self.hosts.list() if self.hosts.has_network(host.name)]
        with self._lock:
            for name in set(self._applied) - {host.name for host in hosts}:
                del self._applied[name]
        if not hosts:
            return 0
        asked = time.monotonic()
        state = self.fetch()
        changed = 0
        for host in hosts:
            port = port_of(host, state)
            try:
                if self._apply(host.name, ruleset(port, state), asked, verify=verify):
                    changed += 1
                    LOG.info("firewall of host %s (%s) follows port %s, groups %s", host.name, host.ip,
                             port.id if port else "(none)", ", ".join(port.security_groups) if port else "-")
            except HostError as exc:
                if self.hosts.has_network(host.name):  # a host destroyed meanwhile is no error
                    LOG.warning("firewall of host %s not applied: %s", host.name, exc)
        return changed

    def _run(self) -> None:
        rounds, failing = 0, False
        while not self._stop.wait(self.interval):
            rounds += 1
            try:
                self.sync(verify=rounds % self.verify_every == 0)
            except Exception:  # the loop must outlive a Neutron outage or a host that vanished mid-round
                if not failing:  # once per outage, not every 2 s
                    LOG.warning("security group sync failed; retrying every %.0f s", self.interval, exc_info=True)
                failing = True
            else:
                if failing:
                    LOG.info("security group sync works again")
                failing = False

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cp-firewall-sync", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
