"""`--dist loadgroup` keeps a group's tests in one process (the suite relies on it).

The README's command runs the suite in two processes with `--dist loadgroup`;
tests/conftest.py groups the full-size model tests (so that two of them are
never in memory at once) and the files that share the app's trained run (so
that it is built once). pytest 9.2 with pytest-xdist 3.8 silently ignored
the groups; this runs a small suite in two processes and checks where its
tests ran.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

TESTS = textwrap.dedent("""
    import json, os, time
    import pytest

    def _record(name):
        with open(os.environ["WHERE_TESTS_RAN"], "a") as f:
            f.write(json.dumps([name, os.environ["PYTEST_XDIST_WORKER"]]) + "\\n")
        time.sleep(0.3)

    @pytest.mark.xdist_group("together")
    @pytest.mark.parametrize("i", range(6))
    def test_grouped(i):
        _record(f"grouped{i}")

    @pytest.mark.parametrize("i", range(6))
    def test_free(i):
        _record(f"free{i}")
""")


def _workers_by_test(tmp_path, dist):
    (tmp_path / "test_small.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    where = tmp_path / f"where_{dist}.jsonl"
    env = {**os.environ, "WHERE_TESTS_RAN": str(where)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", dist, "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         str(tmp_path / "test_small.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(line) for line in where.read_text().splitlines())


@pytest.mark.parametrize("dist", ["loadgroup", "load"])
def test_a_groups_tests_run_in_one_process_only_under_loadgroup(tmp_path, dist):
    workers = _workers_by_test(tmp_path, dist)
    assert len(workers) == 12
    grouped = {workers[f"grouped{i}"] for i in range(6)}
    if dist == "loadgroup":
        assert len(grouped) == 1, workers
        # The other tests still spread over both processes.
        assert len(set(workers.values())) == 2, workers
    else:
        # The control: without the groups, six 0.3 s tests share the two processes.
        assert len(grouped) == 2, workers
