"""The runner adapter with a real ansible-playbook: whatever a job's variables hold reaches Ansible as data.

Jinja2 in extra variables, host and group variables, secrets and nested values stays text: no `pipe` lookup runs a
command (marker files), no `file` lookup reads a file of this machine (a canary token), no `url` lookup fetches
anything (a listener on 127.0.0.1 that counts requests). The playbook runs on this machine (connection: local).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import CountingListener

from controlplane.automation.domain import JobStatus, PlaybookJob
from controlplane.automation.runner import PlaybookRunner

PLAYBOOKS = Path(__file__).parent / "playbooks"


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


@pytest.fixture
def canary(tmp_path: Path) -> tuple[Path, str]:
    token = "canary-" + uuid.uuid4().hex
    path = tmp_path / "control-plane-file"
    path.write_text(token)
    return path, token


def payload(tmp_path: Path, where: str, canary: Path, url: str) -> str:
    """The three lookups of the attack, in expressions and in a statement, for one variable path."""
    return (f"{{{{ lookup('ansible.builtin.pipe', 'touch {tmp_path / ('marker-' + where)}') }}}} "
            f"{{{{ lookup('ansible.builtin.file', '{canary}') }}}} "
            f"{{{{ lookup('ansible.builtin.url', '{url}{where}') }}}} "
            f"{{% set x = query('pipe', 'touch {tmp_path / ('marker-stmt-' + where)}') %}}")


def test_jinja2_in_every_variable_path_stays_text(tmp_path: Path, canary: tuple[Path, str],
                                                  listener: CountingListener) -> None:
    canary_path, token = canary
    values = {where: payload(tmp_path, where, canary_path, listener.url)
              for where in ("extra", "host", "group", "secret", "nested", "fail")}
    out = tmp_path / "seen.json"
    inventory = {"all": {
        "hosts": {"local-1": {"ansible_host": "127.0.0.1", "ansible_python_interpreter": sys.executable,
                              "echo_host": values["host"]}},
        "vars": {"echo_group": values["group"]},
    }}
    job = PlaybookJob("echo_vars.yml", inventory,
                      extravars={"echo_extra": values["extra"], "echo_out": str(out), "echo_fail": values["fail"],
                                 "echo_nested": [{"deep": {"list": [values["nested"]]}}]},
                      secrets={"echo_secret": values["secret"]}, timeout_seconds=120)
    work = tmp_path / "work"
    work.mkdir()

    result = PlaybookRunner(playbooks=PLAYBOOKS, work_dir=work).run(job)

    # The play ran to its failing task, whose message is the variable as given, not what a lookup returned.
    assert result.outcome.status is JobStatus.FAILED
    assert "task 'Fail with a variable' on local-1 failed" in result.outcome.explanation
    assert "lookup('ansible.builtin.file'" in result.outcome.explanation
    seen = json.loads(out.read_text())
    assert seen == {"extra": values["extra"], "host": values["host"], "group": values["group"],
                    "secret": values["secret"], "nested": [{"deep": {"list": [values["nested"]]}}]}
    # Nothing ran, nothing was read, nothing was fetched.
    assert sorted(p.name for p in tmp_path.glob("marker-*")) == []
    assert listener.requests == []
    everything = json.dumps([e.message for e in result.events]) + result.outcome.explanation + out.read_text()
    assert token not in everything
    assert "fetched" not in everything
    assert list(work.iterdir()) == []  # the private run directory is gone


def test_the_same_playbook_does_template_its_own_expressions(tmp_path: Path, listener: CountingListener) -> None:
    """The control: the adapter does not switch templating off, it only keeps the callers' values out of it."""
    out = tmp_path / "seen.json"
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "own.yml").write_text(
        "- hosts: all\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: A lookup written in the playbook runs\n"
        "      ansible.builtin.copy:\n"
        f"        content: \"{{{{ lookup('ansible.builtin.url', '{listener.url}own') }}}}\"\n"
        "        dest: \"{{ echo_out }}\"\n        mode: \"0600\"\n")
    inventory = {"all": {"hosts": {"local-1": {"ansible_host": "127.0.0.1",
                                               "ansible_python_interpreter": sys.executable}}}}

    result = PlaybookRunner(playbooks=playbooks).run(
        PlaybookJob("own.yml", inventory, extravars={"echo_out": str(out)}, timeout_seconds=120))

    assert result.outcome.status is JobStatus.SUCCESSFUL, result.outcome
    assert out.read_text() == "fetched"
    assert listener.requests == ["/own"]
