"""/metrics: public, per-app registry, bounded labels, compliance gauges that follow the register."""

import re

from prometheus_client.parser import text_string_to_metric_families

from controlplane.app import create_app


def _samples(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_and_healthz_are_public(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/metrics").status_code == 200


def test_compliance_gauges_follow_recorded_sessions(client, catalogue, login):
    admin = login("admin1", "admin")
    for day, mode in [("2014-02-03", "video"), ("2014-03-03", "in_person"), ("2014-04-07", "in_person")]:
        response = client.post("/api/v1/compliance/sessions", headers=admin,
                               json={"meeting": "MOEF-ECON", "held_on": day, "mode": mode})
        assert response.status_code == 201, response.text
    client.post("/api/v1/compliance/sessions", headers=admin,
                json={"meeting": "MOIS-LOCAL", "held_on": "2014-05-02", "mode": "video"})

    samples = _samples(client)
    assert samples[("controlplane_remote_meeting_target_ratio", ())] == 0.5
    assert samples[("controlplane_remote_meeting_government_share_ratio", ())] == 0.5
    assert samples[("controlplane_remote_meeting_share_ratio", (("agency", "MOEF"),))] == 0.3333
    assert samples[("controlplane_remote_meeting_share_ratio", (("agency", "MOIS"),))] == 1.0
    # 4 held, 2 video, nothing scheduled: required ceil(0.5 * 4) = 2, already reached.
    assert samples[("controlplane_remote_meeting_video_needed", ())] == 0


def test_unreachable_target_is_exported_as_minus_one(client, catalogue, login):
    admin = login("admin1", "admin")
    for day in ("2014-02-03", "2014-03-03", "2014-04-07"):
        client.post("/api/v1/compliance/sessions", headers=admin,
                    json={"meeting": "MOEF-ECON", "held_on": day, "mode": "in_person"})
    assert _samples(client)[("controlplane_remote_meeting_video_needed", ())] == -1


def test_http_metrics_use_route_templates_not_raw_paths(client, catalogue, login):
    admin = login("admin1", "admin")
    client.get("/api/v1/compliance/meetings/MOIS-LOCAL", headers=admin)
    client.get("/api/v1/compliance/meetings/NO-SUCH", headers=admin)
    text = client.get("/metrics").text
    assert 'route="/api/v1/compliance/meetings/{code}"' in text
    assert "MOIS-LOCAL" not in text and "NO-SUCH" not in text
    assert re.search(r'controlplane_http_requests_total\{method="GET",route="/api/v1/compliance/meetings/\{code\}",'
                     r'status="404"\} 1\.0', text)


def test_each_app_has_its_own_registry(client, settings, clock):
    client.get("/healthz")
    with_other = create_app(settings, clock=clock)
    assert with_other.state.ctx.metrics.registry is not client.app.state.ctx.metrics.registry
    # Nothing served by the other app yet: its counters are empty.
    assert with_other.state.ctx.metrics.http_requests.collect()[0].samples == []
