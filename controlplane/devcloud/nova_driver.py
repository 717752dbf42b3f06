"""Nova compute driver of the dev cloud: Nova's fake driver, except that every server is a real Debian host.

nova-compute loads it as `compute_driver = cp_nspawn.NspawnDriver` through a one-line shim in the dev cloud's
nova/virt package, with this repository on its PYTHONPATH, and with CP_DEVCLOUD_STATE_DIR and CP_DEVCLOUD_CACHE_DIR
set (hosts live under `$CP_DEVCLOUD_STATE_DIR/hosts`). A server is ACTIVE only once its host has booted at the
server's fixed IP and answers SSH; a host that cannot be built puts the server in ERROR with the reason.
Only the first network interface of a server becomes the host's eth0.

Security groups are enforced on the hosts, as Neutron's agents would on a hypervisor (this cloud runs none): each
host's namespace holds an nftables table that follows its port's groups (controlplane/devcloud/firewall_sync.py),
loaded before the host boots and kept in step by a thread of this driver that reads Neutron every 2 s with the
service credentials Nova has.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from neutronclient.common import exceptions as neutron_errors
from nova import context as nova_context
from nova import exception
from nova.compute import power_state
from nova.network import neutron
from nova.virt import fake, hardware

from controlplane.devcloud.firewall import NetworkState
from controlplane.devcloud.firewall_sync import FirewallSync
from controlplane.devcloud.hosts import HostError, HostManager, host_name_for

PORT_FIELDS = ["id", "device_id", "fixed_ips", "allowed_address_pairs", "security_groups", "port_security_enabled"]


def _fixed_ip(network_info: Any) -> tuple[str, str, str]:
    """(address/prefix, gateway, network id) of the first IPv4 fixed IP on a subnet that has a gateway."""
    for vif in network_info or []:
        for subnet in vif["network"]["subnets"]:
            gateway = (subnet.get("gateway") or {}).get("address")
            for ip in subnet["ips"]:
                if gateway and ipaddress.ip_address(ip["address"]).version == 4:
                    prefix = ipaddress.ip_network(subnet["cidr"]).prefixlen
                    return f"{ip['address']}/{prefix}", gateway, vif["network"]["id"]
    raise HostError("the server needs a port with an IPv4 fixed IP on a subnet that has a gateway")


def _neutron_state() -> NetworkState:
    """Every port, security group and address group, read with Nova's service credentials (admin: all projects)."""
    client = neutron.get_client(nova_context.get_admin_context(), admin=True)
    ports = client.list_ports(fields=PORT_FIELDS)["ports"]
    groups = client.list_security_groups()["security_groups"]
    try:
        # neutronclient has no call of its own for address groups (remote_address_group_id).
        address_groups = client.list("address_groups", "/address-groups")["address_groups"]
    except neutron_errors.NotFound:
        address_groups = []
    return NetworkState.from_neutron(ports, groups, address_groups)


def _environment_dir(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise RuntimeError(f"{variable} is not set: the dev cloud launcher sets it for nova-compute")
    return Path(value)


# FakeDriverWithoutFakeNodes (a FakeDriver) keeps a stable node identity like a real driver; plain FakeDriver invents
# a node UUID per process, and Nova then refuses to start again after `devcloud down`/`up`.
class NspawnDriver(fake.FakeDriverWithoutFakeNodes):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self.hosts = HostManager(_environment_dir("CP_DEVCLOUD_STATE_DIR"), _environment_dir("CP_DEVCLOUD_CACHE_DIR"))
        self.firewalls = FirewallSync(self.hosts, _neutron_state)
        self.hosts.before_boot = self.firewalls.enforce

    def init_host(self, host: str) -> None:
        super().init_host(host)
        self.firewalls.start()

    def cleanup_host(self, host: str) -> None:
        self.firewalls.stop()
        super().cleanup_host(host)

    def _create(self, instance: Any, network_info: Any) -> None:
        address, gateway, network_id = _fixed_ip(network_info)
        name = host_name_for(instance.uuid)
        self.hosts.create(name, address=address, gateway=gateway, network_id=network_id,
                          public_key=instance.key_data, hostname=instance.hostname or name)

    def _boot(self, instance: Any, network_info: Any) -> None:
        """Boot the server's host with its disk; a server whose host is gone (`devcloud down`) gets a new one."""
        name = host_name_for(instance.uuid)
        if self.hosts.get(name) is None:
            self._create(instance, network_info)
        else:
            self.hosts.start(name)

    def _track(self, context: Any, instance: Any, network_info: Any, *, block_device_info: Any,
               accel_info: Any = None, share_info: Any = None) -> None:
        """Mark the server running in the fake driver's memory, which a restarted nova-compute has lost."""
        if instance.uuid in self.instances:
            super().power_on(context, instance, network_info, block_device_info=block_device_info,
                             accel_info=accel_info, share_info=share_info)
        else:
            # The fake spawn only records the server: no image, files, password or allocations needed.
            super().spawn(context, instance, None, None, None, None, network_info=network_info,
                          block_device_info=block_device_info, accel_info=accel_info)

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any, admin_password: Any,
              allocations: Any, network_info: Any = None, block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        try:
            self._create(instance, network_info)
            if not power_on:
                self.hosts.stop(host_name_for(instance.uuid))
        except HostError as exc:
            # BuildAbortException: no reschedule to another compute host, the reason becomes the server's fault.
            raise exception.BuildAbortException(instance_uuid=instance.uuid, reason=str(exc)) from exc
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info=network_info, block_device_info=block_device_info, power_on=power_on,
                      accel_info=accel_info)

    def destroy(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                destroy_disks: bool = True, destroy_secrets: bool = True) -> None:
        self.hosts.destroy(host_name_for(instance.uuid))
        super().destroy(context, instance, network_info, block_device_info=block_device_info,
                        destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        # Nova's timeout is the clean-shutdown allowance; 0 asks for a hard power off.
        self.hosts.stop(host_name_for(instance.uuid), timeout=timeout)
        super().power_off(instance, timeout=timeout, retry_interval=retry_interval)

    def power_on(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                 accel_info: Any = None, share_info: Any = None) -> None:
        try:
            self._boot(instance, network_info)
        except HostError as exc:
            raise exception.InstancePowerOnFailure(reason=str(exc)) from exc
        self._track(context, instance, network_info, block_device_info=block_device_info, accel_info=accel_info,
                    share_info=share_info)

    def reboot(self, context: Any, instance: Any, network_info: Any, reboot_type: str, block_device_info: Any = None,
               bad_volumes_callback: Any = None, accel_info: Any = None, share_info: Any = None) -> None:
        try:
            self.hosts.stop(host_name_for(instance.uuid), timeout=0 if reboot_type.upper() == "HARD" else 60)
            self._boot(instance, network_info)
        except HostError as exc:
            raise exception.InstanceRebootFailure(reason=str(exc)) from exc
        self._track(context, instance, network_info, block_device_info=block_device_info, accel_info=accel_info,
                    share_info=share_info)

    def resume_state_on_host_boot(self, context: Any, instance: Any, network_info: Any, share_info: Any,
                                  block_device_info: Any = None) -> None:
        """nova-compute started again: the hosts of servers that should run are booted (with their disks)."""
        try:
            self._boot(instance, network_info)
        except HostError as exc:
            raise exception.InstancePowerOnFailure(reason=str(exc)) from exc
        self._track(context, instance, network_info, block_device_info=block_device_info, share_info=share_info)

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        """A host powered off from inside (`poweroff`, `reboot`) reports SHUTDOWN, so Nova marks its server SHUTOFF."""
        info = super().get_info(instance, use_cache=use_cache)
        if info.state == power_state.RUNNING and not self.hosts.is_running(host_name_for(instance.uuid)):
            return hardware.InstanceInfo(state=power_state.SHUTDOWN)
        return info
