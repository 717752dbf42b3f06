"""Seed the dev cloud through its own APIs: the service catalogue, then an image, flavors and a network.

Run by `controlplane devcloud up` with the dev cloud's own interpreter (its virtualenv has openstacksdk),
outside the package: the control plane talks to clouds only through controlplane/cloud/. It reads one JSON
request on stdin: {"step": "catalog" | "resources", "admin_password": ..., "service_password": ..., "ports": {...}}.
Every step is idempotent: it finds before it creates.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openstack

KEYSTONE = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
SERVICE_USERS = ("glance", "placement", "nova", "neutron")
# Root disks of 1 TB: the hosts are containers whose disks are not allocated, so plans (which read these flavors)
# size servers by vCPU and RAM as with DEVCLOUD_FLAVORS; Nova refuses image-backed servers a flavor of disk 0.
FLAVORS = {"small": (1, 1024, 1000), "medium": (2, 2048, 1000), "large": (4, 4096, 1000)}
IMAGE = "debian-12"
NETWORK, SUBNET, CIDR = "devcloud-net", "devcloud-subnet", "10.78.0.0/24"


def connect(password: str) -> Any:
    return openstack.connect(
        auth_url=KEYSTONE, username="admin", password=password, project_name="admin",
        user_domain_name="Default", project_domain_name="Default", region_name=REGION, identity_api_version="3",
    )


def seed_catalog(conn: Any, service_password: str, ports: dict[str, int]) -> None:
    service_project = conn.identity.find_project("service") or conn.identity.create_project(
        name="service", domain_id="default", description="OpenStack service users")
    roles = {name: conn.identity.find_role(name) or conn.identity.create_role(name=name)
             for name in ("admin", "service")}
    for name in SERVICE_USERS:
        user = conn.identity.find_user(name, domain_id="default")
        if user is None:
            user = conn.identity.create_user(name=name, password=service_password, domain_id="default")
        else:
            conn.identity.update_user(user, password=service_password)
        # Both roles: without `service`, Neutron refuses Nova's service token.
        for role in roles.values():
            conn.identity.assign_project_role_to_user(service_project, user, role)
    endpoints = {
        ("glance", "image"): f"http://127.0.0.1:{ports['glance']}",
        ("placement", "placement"): f"http://127.0.0.1:{ports['placement']}",
        ("nova", "compute"): f"http://127.0.0.1:{ports['nova']}/v2.1",
        ("neutron", "network"): f"http://127.0.0.1:{ports['neutron']}",
    }
    for (name, kind), url in endpoints.items():
        service = next(iter(conn.identity.services(type=kind)), None) or conn.identity.create_service(
            name=name, type=kind)
        present = {endpoint.interface for endpoint in conn.identity.endpoints(service_id=service.id)}
        for interface in ("public", "internal"):
            if interface not in present:
                conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)


def seed_resources(conn: Any) -> None:
    if conn.image.find_image(IMAGE) is None:
        # Servers boot from the project's debootstrap root filesystem; the image record names what they run.
        conn.image.create_image(
            name=IMAGE, data=b"debian-12 (bookworm): hosts boot from the dev cloud's nspawn root filesystem\n",
            disk_format="raw", container_format="bare", visibility="public",
            os_distro="debian", os_version="12",
        )
    for name, (vcpus, ram, disk) in FLAVORS.items():
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
    admin = conn.identity.find_project("admin")
    network = conn.network.find_network(NETWORK, project_id=admin.id) or conn.network.create_network(
        name=NETWORK, project_id=admin.id)
    if conn.network.find_subnet(SUBNET, network_id=network.id) is None:
        # No DHCP agent runs: addresses come from Neutron's IPAM and the compute driver configures them.
        conn.network.create_subnet(name=SUBNET, network_id=network.id, ip_version=4, cidr=CIDR,
                                   gateway_ip="10.78.0.1", enable_dhcp=False,
                                   allocation_pools=[{"start": "10.78.0.10", "end": "10.78.0.250"}])
    # Room for the benchmark's 20 servers and the tests in the admin project.
    conn.set_compute_quotas(admin.id, instances=100, cores=400, ram=409600)


def main() -> None:
    request = json.load(sys.stdin)
    conn = connect(request["admin_password"])
    if request["step"] == "catalog":
        seed_catalog(conn, request["service_password"], request["ports"])
    elif request["step"] == "resources":
        seed_resources(conn)
    else:
        raise SystemExit(f"unknown step {request['step']!r}")


if __name__ == "__main__":
    main()
