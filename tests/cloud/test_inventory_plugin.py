"""inventory/openstack.yml through Ansible's own openstack.cloud inventory plugin, against the dev cloud."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from controlplane.cloud.domain import ServerSpec
from controlplane.cloud.gateway import CloudGateway
from controlplane.devcloud.cloud import DevCloud

pytestmark = pytest.mark.devcloud
REPO = Path(__file__).resolve().parent.parent.parent


def test_the_plugin_config_lists_the_clouds_servers_with_their_address(devcloud: DevCloud) -> None:
    owner = f"test:{uuid.uuid4().hex[:8]}"
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as admin:
        server = admin.create_server(ServerSpec(owner, f"inv-{owner[-8:]}", "small", "debian-12", "devcloud-net"))
        try:
            listing = subprocess.run(
                [str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventory/openstack.yml", "--list"],
                cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
                env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(Path.home()),
                     "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
            )
        finally:
            admin.delete_server(server.id)
    inventory = json.loads(listing.stdout)
    # ansible-core 2.19 marks values from plugins as unsafe in its JSON: {"__ansible_unsafe": value}.
    hostvars = {k: v["__ansible_unsafe"] if isinstance(v, dict) and "__ansible_unsafe" in v else v
                for k, v in inventory["_meta"]["hostvars"][server.name].items()}
    assert hostvars["ansible_host"] == server.addresses[0]
    assert hostvars["ansible_user"] == "root"
    assert server.name in inventory[f"project_{server.project_id}"]["hosts"]
