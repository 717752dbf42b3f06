"""Plans size servers with the flavors the configured cloud offers: flavors named unlike the dev cloud's, made on
the real dev cloud, are read by the gateway, cached by the cloud refresh and chosen by the plan, whose servers boot
from the image the settings name (CP_MIGRATION_IMAGE)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack.config
import openstack.connection
import pytest

from controlplane.cloud import flows as cloud_flows
from controlplane.cloud.metrics import CloudCollector
from controlplane.composition import build_context, close_context
from controlplane.config import Settings
from controlplane.inventory import files, planning
from controlplane.inventory import service as inventory
from controlplane.inventory.domain import Component, ComponentKind, Criticality, PlanningError, Sizing, System
from controlplane.migrations import upgrade

pytestmark = pytest.mark.devcloud


@pytest.fixture
def gov_flavors(devcloud: Any) -> Iterator[dict[str, tuple[int, int]]]:
    """Two flavors named as a production cloud might name them, removed afterwards."""
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    conn = openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))
    tag = uuid.uuid4().hex[:6]
    wanted = {f"gov.c8m16-{tag}": (8, 16384), f"gov.c16m32-{tag}": (16, 32768)}
    made = [conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=0, is_public=True)
            for name, (vcpus, ram) in wanted.items()]
    try:
        yield wanted
    finally:
        for flavor in made:
            conn.compute.delete_flavor(flavor, ignore_missing=True)
        conn.close()


def test_a_plan_sizes_servers_with_the_clouds_own_flavors(devcloud: Any, gov_flavors: dict[str, tuple[int, int]],
                                                          tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'controlplane.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, data_dir=tmp_path, cloud=devcloud.cloud_name,
                        clouds_yaml=devcloud.clouds_yaml, workflows=False, migration_image="gov-debian-12")
    ctx = build_context(settings)
    try:
        assert cloud_flows.cached_figures(ctx).flavors, "the refresh read no flavors"
        cached = ctx.metrics.of(CloudCollector).snapshot
    finally:
        close_context(ctx)
    offered = {f.name: (f.vcpus, f.ram_mb) for f in cached.flavors}
    assert gov_flavors.items() <= offered.items() and {"small", "medium", "large"} <= set(offered)

    # A database of 12 vCPU and 24 GiB: more than any dev cloud size, and a database tier does not scale out.
    database = System("gov-ledger", "MOIS", "국고 원장", "Treasury ledger", Criticality.LOW,
                      Sizing(vcpus=12, ram_mb=24576, disk_gb=100),
                      (Component(ComponentKind.OS, "HPE", "HP-UX", "11i v3"),
                       Component(ComponentKind.DB, "Oracle", "Oracle Database", "11g")))
    catalogue = files.load_catalogue()
    with pytest.raises(PlanningError) as refused:
        planning.plan_system(database, catalogue, planning.DEVCLOUD_FLAVORS)
    assert [f.code for f in refused.value.findings] == ["no_flavor"]

    plan = planning.plan_system(database, catalogue, inventory.flavors_of(cached), image=settings.migration_image)
    [server] = plan.servers
    assert server.flavor.name == next(name for name in gov_flavors if name.startswith("gov.c16m32"))
    assert server.image == "gov-debian-12"
