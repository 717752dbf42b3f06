"""Ansible through ansible-runner: jobs, their events and testinfra verification (runner.py imports ansible_runner)."""
