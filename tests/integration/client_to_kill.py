"""A client process for the tests of what a killed client leaves: it starts a
cluster, prints its job ids and record id (a detached cluster's session) as
JSON once the workers are up, and waits to be killed with SIGKILL.

Arguments: scheduler, mode, the cluster options as JSON, the number of jobs
to ask for, the number of workers to wait for, and optionally "publish": the
client first publishes a result, ``answer`` (42), made on a worker."""

import faulthandler
import json
import signal
import sys
import time

from distributed import Client

from tests.integration.conftest import ssh_runner
from tests.integration.testbeds import TESTBEDS

faulthandler.register(signal.SIGUSR1, all_threads=True)  # a test that finds it hung asks where it is
# SIGINT raises KeyboardInterrupt even where it was ignored when the suite started (a job started
# in the background by a non-interactive shell ignores it, and so do the processes it starts).
signal.signal(signal.SIGINT, signal.default_int_handler)
scheduler, mode, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
jobs, workers = int(sys.argv[4]), int(sys.argv[5])
if mode == "ssh":
    options["runner"] = ssh_runner()
cluster = TESTBEDS[scheduler].cluster_cls(**options)
cluster.scale(jobs=jobs)
client = Client(cluster)
client.wait_for_workers(workers, timeout=300)
if sys.argv[6:] == ["publish"]:
    answer = client.submit(lambda: 6 * 7)
    answer.result()
    client.publish_dataset(answer=answer)
print(json.dumps({"jobs": sorted(cluster.batch.active), "record": cluster.batch.record.id}), flush=True)
# Until the test kills us, or interrupts us (SIGINT) to exit through the atexit handlers.
while True:
    time.sleep(1)
