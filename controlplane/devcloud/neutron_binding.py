"""ML2 mechanism driver that binds every port (the dev cloud runs no Neutron agents).

Copied into the dev cloud's virtualenv as `cp_devcloud_binding` and declared under the
`neutron.ml2.mechanism_drivers` entry point as `cp_bind`. The nspawn compute driver wires the host
itself (bridge per network, veth per server), so Neutron only has to say the port is bound and active.
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindEveryPortDriver(api.MechanismDriver):
    def initialize(self) -> None:
        pass

    def bind_port(self, context: api.PortContext) -> None:
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OTHER, {portbindings.CAP_PORT_FILTER: False},
                                status=constants.PORT_STATUS_ACTIVE)
            return
