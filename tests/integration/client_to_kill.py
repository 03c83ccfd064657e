"""A client process for the death-timeout test: it starts a cluster, prints
its job ids once the workers are up, and waits to be killed with SIGKILL.

Arguments: scheduler, mode, the cluster options as JSON, the number of jobs
to ask for and the number of workers to wait for."""

import json
import signal
import sys

from distributed import Client

from tests.integration.conftest import ssh_runner
from tests.integration.testbeds import TESTBEDS

scheduler, mode, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
jobs, workers = int(sys.argv[4]), int(sys.argv[5])
if mode == "ssh":
    options["runner"] = ssh_runner()
cluster = TESTBEDS[scheduler].cluster_cls(**options)
cluster.scale(jobs=jobs)
Client(cluster).wait_for_workers(workers, timeout=300)
print(json.dumps(sorted(cluster.batch.active)), flush=True)
signal.pause()  # until the test kills us
