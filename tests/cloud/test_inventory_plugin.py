"""inventory/openstack.yml through Ansible's own openstack.cloud inventory plugin, against the dev cloud."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from controlplane.cloud.domain import ServerInfo, ServerSpec
from controlplane.cloud.gateway import CloudGateway
from controlplane.devcloud.cloud import DevCloud

pytestmark = pytest.mark.devcloud
REPO = Path(__file__).resolve().parent.parent.parent


def test_the_plugin_config_lists_the_clouds_servers_with_their_address(devcloud: DevCloud) -> None:
    owner = f"test:{uuid.uuid4().hex[:8]}"
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as admin:
        server = admin.create_server(ServerSpec(owner, f"inv-{owner[-8:]}", "small", "debian-12", "devcloud-net"))
        try:
            inventory = _inventory()
        finally:
            admin.delete_server(server.id)
    # ansible-core 2.19 marks values from plugins as unsafe in its JSON: {"__ansible_unsafe": value}.
    hostvars = {k: v["__ansible_unsafe"] if isinstance(v, dict) and "__ansible_unsafe" in v else v
                for k, v in inventory["_meta"]["hostvars"][server.name].items()}
    assert hostvars["ansible_host"] == server.addresses[0]
    assert hostvars["ansible_user"] == "root"
    assert server.name in inventory[f"project_{server.project_id}"]["hosts"]


def test_labelled_servers_are_grouped_per_migration_wave_and_agency(devcloud: DevCloud) -> None:
    migration = str(uuid.uuid4())
    tag = migration[:8]
    labels = {"cp_migration": migration, "cp_wave": "7", "cp_agency": "MOIS"}
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as admin:
        made: list[ServerInfo] = []
        try:
            labelled = admin.create_server(ServerSpec(
                f"migration/{migration}/web-1", f"inv-web-1-{tag}", "small", "debian-12", "devcloud-net",
                labels=labels))
            made.append(labelled)
            plain = admin.create_server(ServerSpec(f"test:{tag}", f"inv-plain-{tag}", "small", "debian-12",
                                                   "devcloud-net"))
            made.append(plain)
            inventory = _inventory()
        finally:
            for server in made:
                admin.delete_server(server.id)
    # Ansible makes group names of letters, digits and _ only: the uuid's dashes (and the owner's / and -) become
    # underscores, the case stays.
    underscored = migration.replace("-", "_")
    assert inventory[f"migration_{underscored}"]["hosts"] == [labelled.name]
    assert inventory[f"owner_migration_{underscored}_web_1"]["hosts"] == [labelled.name]
    # Other servers on the shared dev cloud may carry the same wave or agency.
    assert labelled.name in inventory["wave_7"]["hosts"]
    assert labelled.name in inventory["agency_mois"]["hosts"]  # as the static inventory names it
    assert "agency_MOIS" not in inventory
    labelled_groups = [name for name in inventory if name.startswith(("migration_", "wave_", "agency_"))]
    assert not [name for name in labelled_groups if plain.name in inventory[name].get("hosts", [])]
    assert plain.name in inventory[f"project_{plain.project_id}"]["hosts"]


def _inventory() -> dict[str, Any]:
    """`ansible-inventory --list` of inventory/openstack.yml, as the playbooks would see it."""
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventory/openstack.yml", "--list"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(Path.home()),
             "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )
    inventory: dict[str, Any] = json.loads(listing.stdout)
    return inventory
