"""Agencies on the OpenStack cloud: onboarding, servers, capacity (gateway.py is the only openstack import)."""
