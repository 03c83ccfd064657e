"""A client process for the death-timeout test: it starts a cluster, prints
its job ids once the workers are up, and waits to be killed with SIGKILL."""

import json
import sys
import time

from distributed import Client

from tests.integration.testbeds import TESTBEDS

scheduler, job_name, queue, logs = sys.argv[1:5]
cluster = TESTBEDS[scheduler].cluster_cls(
    cores=1, memory="512MiB", queue=queue or None, job_name=job_name, death_timeout=15,
    poll_interval="1s", log_directory=logs, dashboard_address=":0",
)
cluster.scale(jobs=2)
Client(cluster).wait_for_workers(2, timeout=300)
print(json.dumps(sorted(cluster.batch.active)), flush=True)
while True:
    time.sleep(60)
