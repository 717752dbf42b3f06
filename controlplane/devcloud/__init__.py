"""The local OpenStack dev cloud: its launcher, its hosts and the drivers it loads into Nova and Neutron.

Kept import-free: nova-compute imports controlplane.devcloud.nova_driver from the dev cloud's own virtualenv.
"""
