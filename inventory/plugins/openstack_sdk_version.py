"""Inventory plugin that parses nothing: loading it imports openstack.version.

The openstack.cloud collection (2.5, bundled with ansible 12) reads openstack.version.__version__ without
importing that submodule, and openstacksdk 4.x no longer imports it itself. Listed before `auto` in
ansible.cfg's enable_plugins, this plugin is loaded first, so the real plugin finds the attribute.
"""

from __future__ import annotations

import openstack.version  # noqa: F401  (the point of this module)
from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = """
name: openstack_sdk_version
short_description: makes openstack.version importable for openstack.cloud.openstack
description: Parses no source; see the module docstring.
"""


class InventoryModule(BaseInventoryPlugin):  # type: ignore[misc]
    NAME = "openstack_sdk_version"

    def verify_file(self, path: str) -> bool:
        return False
