"""batchprobe's own suite: one job, run on a compute node, seen on the shared home."""

import pathlib
import socket
import time
import uuid

import batchprobe


def test_a_job_imports_this_package_on_a_compute_node():
    marker = pathlib.Path.cwd() / f"marker-{uuid.uuid4().hex[:8]}"
    print(batchprobe.submit_marker(marker))
    deadline = time.monotonic() + 180
    while not (marker.exists() and marker.read_text().strip()):  # created, then written
        assert time.monotonic() < deadline, f"no job wrote {marker} within 180 s"
        time.sleep(0.5)
    ran_on = marker.read_text().strip()
    assert ran_on and ran_on != socket.gethostname(), f"the job ran on {ran_on!r}, not on a compute node"
