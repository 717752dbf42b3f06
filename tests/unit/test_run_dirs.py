"""Run directories carry the process that made them: those of a process that is gone (a crash) are removed with
what they hold, a live process's and foreign names are left alone."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.automation.runner import remove_orphaned_run_dirs, run_dir_prefix


def test_only_the_run_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    mine = tmp_path / (run_dir_prefix("job") + "abc123")
    dead = [tmp_path / f"cp-{kind}-999999.1-xyz_9" for kind in ("job", "ssh", "checks")]
    reused = tmp_path / f"cp-job-{os.getpid()}.1-pid_reused"  # this pid, another start time: not this process
    foreign = [tmp_path / "cp-job-8fk2l1", tmp_path / "other-999999.1-x"]
    for path in (mine, *dead, reused, *foreign):
        path.mkdir()
        (path / "secret-vars.json").write_text("{}")
    assert mine.name.startswith(f"cp-job-{os.getpid()}.")

    removed = remove_orphaned_run_dirs(tmp_path)

    assert sorted(removed) == sorted([*dead, reused])
    assert all(not p.exists() for p in (*dead, reused))
    assert mine.exists() and all(p.exists() for p in foreign)
