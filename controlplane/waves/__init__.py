"""Waves of migrations onto the cloud: running each system's steps (provision, configure, move data, verify, cut
over, retire) as durable workflows, their controls (approve, pause, resume, cancel, retry) and rollbacks.

`domain` holds the pure rules of running a migration (states, controls, the jobs of each step); `flows` are the
steps through the ports; `engine` runs them durably.
"""
