"""A client process for the death-timeout test: it starts a cluster, prints
its job ids once the workers are up, and waits to be killed with SIGKILL.

Arguments: scheduler, mode, and the cluster options as JSON."""

import json
import sys
import time

from distributed import Client

from tests.integration.conftest import ssh_runner
from tests.integration.testbeds import TESTBEDS

scheduler, mode, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if mode == "ssh":
    options["runner"] = ssh_runner()
cluster = TESTBEDS[scheduler].cluster_cls(**options)
cluster.scale(jobs=2)
Client(cluster).wait_for_workers(2, timeout=300)
print(json.dumps(sorted(cluster.batch.active)), flush=True)
while True:
    time.sleep(60)
