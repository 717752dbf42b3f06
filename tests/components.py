"""The real components tests drive, and what a test does when one is missing: it fails.

`missing("promtool", "promtool is not on PATH")` fails the test, naming the component, why it is missing and how
to get it. A run that lacks a component has not tested what needs it, so it must not pass: CI (`.ci/run`, which is
`scripts/test` with no variable set) fails. On a developer machine `CP_TESTS_ALLOW_MISSING` (component names,
comma-separated, or `all`) turns that into a skip of those components' tests. CI and `scripts/test` never set it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ALLOW_MISSING = "CP_TESTS_ALLOW_MISSING"

# Each component the tests need from the machine, with how to get it.
COMPONENTS = {
    "postgres": "start PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) or point CP_TEST_POSTGRES_URL at one",
    "promtool": "run `scripts/setup --test` (Debian's prometheus package)",
    "chromium": "run `scripts/setup --test` (Debian's chromium package) or point CP_TEST_CHROMIUM at one",
    "root": "run the tests as root, as CI does",
    "nft": "run `scripts/setup` (Debian's nftables package)",
    "unshare": "install Debian's util-linux package",
    "janus": "run `scripts/setup --test` (Debian's janus package)",
    "kamailio": "run `scripts/setup --test` (Debian's kamailio package)",
    "sipp": "run `scripts/setup --test` (Debian's sip-tester package)",
    "alertmanager": "run `scripts/setup --test` (Debian's prometheus-alertmanager package)",
    "host-tools": "run `scripts/setup` (systemd-nspawn, debootstrap and apt-cacher-ng)",
}


def allowed_missing() -> frozenset[str]:
    """The components CP_TESTS_ALLOW_MISSING lets be missing (`all`: every one). Unknown names are an error."""
    names = {name.strip() for name in os.environ.get(ALLOW_MISSING, "").split(",") if name.strip()}
    unknown = sorted(names - set(COMPONENTS) - {"all"})
    if unknown:
        raise pytest.UsageError(f"{ALLOW_MISSING}: unknown component(s) {', '.join(unknown)}; "
                                f"the components are {', '.join(COMPONENTS)} (or all)")
    return frozenset(COMPONENTS) if "all" in names else frozenset(names)


def missing(component: str, reason: str) -> NoReturn:
    """Fail the test: `component` is missing because of `reason`. A skip instead when CP_TESTS_ALLOW_MISSING
    names the component (or says `all`)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown test component {component!r}; add it to tests/components.py")
    if component in allowed_missing():
        pytest.skip(f"{component} missing, allowed by {ALLOW_MISSING}: {reason}")
    pytest.fail(f"{component} missing: {reason}; to get it: {COMPONENTS[component]}. "
                f"(On a developer machine {ALLOW_MISSING}={component} skips these tests instead; CI never does.)",
                pytrace=False)
