"""Pure rules of onboarding (validation, the plan as a diff, inventory) and the gateway's error translation."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from controlplane.cloud import domain
from controlplane.cloud.domain import IngressRule, ObservedState, OnboardingSpec, Quotas, ServerInfo, SpecError
from controlplane.cloud.errors import (
    CloudConflict,
    CloudError,
    CloudNotFound,
    CloudTimeout,
    CloudUnavailable,
    QuotaExceeded,
)
from controlplane.cloud.gateway import CloudGateway, RetryPolicy, _is_transient, _translate

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNb0ElLk4j5+2a0L8z3BhqJ5O9Zp6bq1XlWw4v1mXfA ops@example"
SSH = IngressRule("tcp", 22, 22, "10.0.0.0/8")
WEB = IngressRule("tcp", 80, 443, "0.0.0.0/0")
SPEC = OnboardingSpec("MOIS", Quotas(10, 20, 40960, 10), "10.81.3.0/24", (SSH, WEB), KEY)


def _matching(**overrides: object) -> ObservedState:
    observed = ObservedState(
        project_id="p", user_exists=True, user_has_role=True, quotas=Quotas(10, 20, 40960, 0),
        network_id="n", subnet_id="s", subnet_cidr="10.81.3.0/24", router_id="r", router_has_interface=True,
        security_group_id="g", ingress=frozenset({SSH, WEB}), keypair_public_key=KEY.rsplit(" ", 1)[0] + " other",
    )
    return replace(observed, **overrides)  # type: ignore[arg-type]


def test_names_derive_from_the_agency_code() -> None:
    assert (SPEC.project_name, SPEC.network_name, SPEC.subnet_name, SPEC.router_name, SPEC.security_group_name,
            SPEC.user_name, SPEC.keypair_name) == (
        "agency-mois", "agency-mois-net", "agency-mois-subnet", "agency-mois-router", "agency-mois-ingress",
        "agency-mois-svc", "agency-mois-key")
    assert domain.agency_group_name(SPEC.project_name) == SPEC.security_group_name
    assert SPEC.gateway_ip == "10.81.3.1"


@pytest.mark.parametrize(("change", "field"), [
    ({"agency_code": "mois"}, "agency_code"),
    ({"quotas": Quotas(-1, 1, 1, 1)}, "quotas.instances"),
    ({"cidr": "10.81.3.0/33"}, "cidr"),
    ({"cidr": "8.8.8.0/24"}, "cidr"),
    ({"cidr": "10.0.0.0/8"}, "cidr"),
    ({"ingress": (IngressRule("sctp", 1, 1, "10.0.0.0/8"),)}, "ingress[0].protocol"),
    ({"ingress": (IngressRule("tcp", 0, 22, "10.0.0.0/8"),)}, "ingress[0].port_min"),
    ({"ingress": (IngressRule("tcp", 443, 80, "10.0.0.0/8"),)}, "ingress[0].port_max"),
    ({"ingress": (IngressRule("icmp", 8, 8, "10.0.0.0/8"),)}, "ingress[0].port_min"),
    ({"ingress": (IngressRule("tcp", 22, 22, "10.0.0.300/8"),)}, "ingress[0].remote_cidr"),
    ({"ingress": (SSH, SSH)}, "ingress"),
    ({"public_key": "not a key"}, "public_key"),
])
def test_bad_specs_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        domain.validate_spec(replace(SPEC, **change))  # type: ignore[arg-type]
    assert raised.value.field == field


def test_a_good_spec_passes() -> None:
    domain.validate_spec(SPEC)
    domain.validate_spec(replace(SPEC, ingress=(IngressRule("icmp", None, None, "10.0.0.0/8"),), public_key=None))


def test_nothing_there_plans_every_create() -> None:
    plan = domain.diff(SPEC, ObservedState())
    assert [(c.action, c.resource) for c in plan.changes] == [
        ("create", "project"), ("create", "user"), ("create", "role_assignment"), ("update", "quota"),
        ("create", "network"), ("create", "subnet"), ("create", "router"), ("create", "router_interface"),
        ("create", "security_group"), ("create", "security_group_rule"), ("create", "security_group_rule"),
        ("create", "keypair"),
    ]
    assert plan.summary() == "11 to create, 1 to update, 0 to delete, 1 skipped"


def test_without_a_volume_service_the_volume_quota_is_skipped_not_planned_forever() -> None:
    plan = domain.diff(SPEC, _matching())
    assert plan.is_noop and plan.skipped == ("quota agency-mois volumes: the cloud has no block-storage service",)
    assert plan.summary() == "0 to create, 0 to update, 0 to delete, 1 skipped"
    with_volumes = domain.diff(SPEC, _matching(volumes_supported=True, quotas=Quotas(10, 20, 40960, 10)))
    assert with_volumes.is_noop and with_volumes.skipped == ()
    assert with_volumes.summary() == "0 to create, 0 to update, 0 to delete"


def test_matching_state_is_a_no_op_and_the_key_comment_does_not_matter() -> None:
    assert domain.diff(SPEC, _matching()).is_noop


def test_only_what_differs_is_planned() -> None:
    observed = _matching(quotas=Quotas(5, 20, 40960, 0), ingress=frozenset({SSH, IngressRule("tcp", 3389, 3389,
                                                                                             "0.0.0.0/0")}))
    plan = domain.diff(SPEC, observed)
    assert [c.describe() for c in plan.changes] == [
        "update quota agency-mois (instances: 5 -> 10)",
        "create security_group_rule tcp 80-443 from 0.0.0.0/0",
        "delete security_group_rule tcp 3389 from 0.0.0.0/0",
    ]


def test_volume_quota_is_compared_only_where_the_cloud_has_volumes() -> None:
    assert domain.diff(SPEC, _matching(quotas=Quotas(10, 20, 40960, 3))).is_noop
    plan = domain.diff(SPEC, _matching(quotas=Quotas(10, 20, 40960, 3), volumes_supported=True))
    assert [c.describe() for c in plan.changes] == ["update quota agency-mois (volumes: 3 -> 10)"]


def test_a_new_key_replaces_the_keypair_and_no_key_leaves_it_alone() -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOther1 x"
    assert [c.describe() for c in domain.diff(SPEC, _matching(keypair_public_key=other)).changes] == [
        "update keypair agency-mois-key (public_key: (old key) -> (new key))"]
    assert domain.diff(replace(SPEC, public_key=None), _matching(keypair_public_key=other)).is_noop


def test_a_subnet_range_cannot_change_in_place() -> None:
    with pytest.raises(SpecError) as raised:
        domain.diff(SPEC, _matching(subnet_cidr="10.81.9.0/24"))
    assert raised.value.field == "cidr" and "10.81.9.0/24" in raised.value.reason


def test_default_cidrs_are_one_slash_24_per_agency() -> None:
    assert domain.default_cidr(3) == "10.81.3.0/24"
    with pytest.raises(SpecError):
        domain.default_cidr(255)


def test_credentials_never_show_their_password() -> None:
    credential = domain.AgencyCredential(user_name="agency-mois-svc", password="s3cret-value", project_id="p")
    assert "s3cret-value" not in repr(credential)
    assert "s3cret-value" not in repr(domain.ApplyResult(domain.Plan("MOIS", ()), "p", "n", credential))


def test_static_inventory_lists_servers_with_an_address() -> None:
    servers = [ServerInfo("2", "web-2", "ACTIVE", "m:1", "p", ("10.81.3.12",), "small"),
               ServerInfo("1", "web-1", "ACTIVE", "m:1", "p", ("10.81.3.11",), "small"),
               ServerInfo("3", "building", "BUILD", "m:2", "p", (), "small")]
    assert domain.static_inventory(servers, group="agency-mois") == {"all": {"children": {"agency-mois": {"hosts": {
        "web-1": {"ansible_host": "10.81.3.11", "ansible_user": "root", "openstack_id": "1"},
        "web-2": {"ansible_host": "10.81.3.12", "ansible_user": "root", "openstack_id": "2"},
    }}}}}


@pytest.mark.parametrize(("exc", "error"), [
    (sdk.NotFoundException("No Server found for x"), CloudNotFound),
    (sdk.ConflictException("Port is in use"), CloudConflict),
    (sdk.HttpException("Quota exceeded for instances: Requested 1, but already used 1 of 1 instances",
                       http_status=403), QuotaExceeded),
    (sdk.HttpException("Quota exceeded for resources: ['network'].", http_status=409), QuotaExceeded),
    (sdk.HttpException("VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'.",
                       http_status=413), QuotaExceeded),
    (sdk.ResourceTimeout("Timeout waiting for the server"), CloudTimeout),
    (sdk.HttpException("Service Unavailable", http_status=503), CloudUnavailable),
    (ksa.ConnectFailure("Unable to establish connection"), CloudUnavailable),
    (sdk.HttpException("Forbidden", http_status=403), CloudError),
])
def test_sdk_failures_become_the_control_planes_errors(exc: Exception, error: type[CloudError]) -> None:
    translated = _translate(exc, "create server web-1")
    assert type(translated) is error
    assert translated.message.startswith("create server web-1")


def test_only_connection_failures_and_gateway_errors_are_retried() -> None:
    assert _is_transient(ksa.ConnectFailure("refused"))
    assert _is_transient(sdk.HttpException("Bad Gateway", http_status=502))
    assert not _is_transient(sdk.HttpException("Internal Server Error", http_status=500))
    assert not _is_transient(sdk.HttpException("Quota exceeded", http_status=403))
    assert not _is_transient(sdk.NotFoundException("gone"))


class _Flaky:
    """A cloud call that fails with `errors` first, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def _gateway(budget: float) -> CloudGateway:
    # The retry loop never touches the connection.
    return CloudGateway(object(), retry=RetryPolicy(budget_seconds=budget, initial_delay=0.01, max_delay=0.02))


def test_transient_failures_are_retried_until_an_answer() -> None:
    call = _Flaky(ksa.ConnectFailure("refused"), sdk.HttpException("Service Unavailable", http_status=503))
    assert _gateway(5)._call("list servers", call) == "answer"
    assert call.calls == 3


def test_other_failures_are_raised_at_once_as_the_control_planes_errors() -> None:
    call = _Flaky(sdk.HttpException("Quota exceeded for instances: Requested 1, but already used 1 of 1 instances",
                                    http_status=403))
    with pytest.raises(QuotaExceeded) as raised:
        _gateway(5)._call("create server web-1 in project agency-mois", call)
    assert call.calls == 1
    assert raised.value.message.startswith("create server web-1 in project agency-mois: quota exceeded")
    assert "instances" in raised.value.message


def test_a_cloud_down_longer_than_the_budget_is_unavailable() -> None:
    call = _Flaky(*[ksa.ConnectFailure("refused")] * 1000)
    started = time.monotonic()
    with pytest.raises(CloudUnavailable) as raised:
        _gateway(0.2)._call("list servers", call)
    assert time.monotonic() - started < 1 and 2 < call.calls < 1000
    assert raised.value.message == "list servers: the cloud did not answer (ConnectFailure)"
    assert isinstance(raised.value.__cause__, ksa.ConnectFailure)


def test_server_labels_are_checked_and_kept_as_given() -> None:
    labels = {"cp_migration": "0b6f4c1e-5d7a-4a8e-9c3b-2f1d6e8a7b90", "cp_wave": "7", "cp_agency": "MOIS"}
    spec = domain.ServerSpec("migration/x/web-1", "web-1", "small", "debian-12", "net", labels=labels)
    labels["cp_wave"] = "8"  # the spec keeps its own copy
    assert spec.labels == {"cp_migration": "0b6f4c1e-5d7a-4a8e-9c3b-2f1d6e8a7b90", "cp_wave": "7",
                           "cp_agency": "MOIS"}
    assert hash(spec) == hash(replace(spec, labels={}))  # still hashable; labels are compared, not hashed
    assert spec != replace(spec, labels={})
    assert domain.ServerSpec("o", "n", "small", "debian-12", "net").labels == {}
    domain.validate_labels({"cp_" + "a" * 30: "x" * 255, "cp_x": ""})


@pytest.mark.parametrize(("labels", "field"), [
    ({"cp_owner": "migration/other/web-1"}, "labels.cp_owner"),
    ({"migration": "1"}, "labels.migration"),
    ({"cp_": "1"}, "labels.cp_"),
    ({"cp_Wave": "1"}, "labels.cp_Wave"),
    ({"cp_wave2": "1"}, "labels.cp_wave2"),
    ({"cp_" + "a" * 31: "1"}, "labels.cp_" + "a" * 31),
    ({"cp_wave": "x" * 256}, "labels.cp_wave"),
    ({"cp_wave": 7}, "labels.cp_wave"),
])
def test_bad_server_labels_name_the_label(labels: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        domain.ServerSpec("o", "n", "small", "debian-12", "net", labels=labels)  # type: ignore[arg-type]
    assert raised.value.field == field
