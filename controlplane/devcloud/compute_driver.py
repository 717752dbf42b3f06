"""Nova compute driver of the dev cloud: Nova's fake driver, except that every server is a real nspawn host.

Loaded by nova-compute as `cp_nspawn.NspawnDriver` (a shim the launcher writes into nova.virt) with this
repository on its PYTHONPATH. A server is ACTIVE only once its host has booted and answers SSH; a host
that cannot be built puts the server in ERROR with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nova import exception
from nova.virt import fake

from controlplane.devcloud.nspawn import HostError, HostManager, host_name_for


def _address(network_info: Any) -> tuple[str, str, str]:
    """(address/prefix, gateway, network id) of the first IPv4 fixed IP on a subnet with a gateway."""
    for vif in network_info or []:
        for subnet in vif["network"]["subnets"]:
            gateway = (subnet.get("gateway") or {}).get("address")
            for ip in subnet["ips"]:
                if gateway and ip["version"] == 4:
                    prefix = subnet["cidr"].split("/")[1]
                    return f"{ip['address']}/{prefix}", gateway, vif["network"]["id"]
    raise exception.InstanceDeployFailure(
        reason="a dev cloud server needs a port with an IPv4 address on a subnet that has a gateway")


# FakeDriverWithoutFakeNodes keeps a stable node identity like a real driver; plain FakeDriver invents a new
# node UUID per process, and Nova then refuses to start again after `devcloud down`/`up`.
class NspawnDriver(fake.FakeDriverWithoutFakeNodes):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self.hosts = HostManager(Path(os.environ["CP_DEVCLOUD_STATE_DIR"]) / "hosts",
                                 Path(os.environ["CP_DEVCLOUD_CACHE_DIR"]))

    def init_host(self, host: str) -> None:
        super().init_host(host)
        self.hosts.ensure_base()
        self.hosts.ensure_apt_proxy()

    def _boot(self, instance: Any, network_info: Any) -> None:
        address, gateway, network_id = _address(network_info)
        try:
            self.hosts.create(host_name_for(instance.uuid), address=address, gateway=gateway, network_id=network_id,
                              public_key=instance.key_data, hostname=instance.hostname or host_name_for(instance.uuid))
        except HostError as exc:
            raise exception.InstanceDeployFailure(reason=str(exc)) from exc

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any, admin_password: Any,
              allocations: Any, network_info: Any = None, block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        if power_on:
            self._boot(instance, network_info)
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info=network_info, block_device_info=block_device_info, power_on=power_on,
                      accel_info=accel_info)

    def destroy(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                destroy_disks: bool = True, destroy_secrets: bool = True) -> None:
        self.hosts.destroy(host_name_for(instance.uuid))
        super().destroy(context, instance, network_info, block_device_info=block_device_info,
                        destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        self.hosts.stop(host_name_for(instance.uuid))
        super().power_off(instance, timeout=timeout, retry_interval=retry_interval)

    def power_on(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                 accel_info: Any = None, share_info: Any = None) -> None:
        self._boot(instance, network_info)
        super().power_on(context, instance, network_info, block_device_info=block_device_info,
                         accel_info=accel_info, share_info=share_info)

    def reboot(self, context: Any, instance: Any, network_info: Any, reboot_type: str, block_device_info: Any = None,
               bad_volumes_callback: Any = None, accel_info: Any = None, share_info: Any = None) -> None:
        self.hosts.stop(host_name_for(instance.uuid))
        self._boot(instance, network_info)
        super().reboot(context, instance, network_info, reboot_type, block_device_info=block_device_info,
                       bad_volumes_callback=bad_volumes_callback, accel_info=accel_info, share_info=share_info)

    def resume_state_on_host_boot(self, context: Any, instance: Any, network_info: Any, share_info: Any,
                                  block_device_info: Any = None) -> None:
        """After `devcloud down`/`up` the hosts of running servers are booted again (their disks start fresh)."""
        super().spawn(context, instance, instance.image_meta, None, None, None, network_info=network_info,
                      block_device_info=block_device_info)
        self._boot(instance, network_info)
