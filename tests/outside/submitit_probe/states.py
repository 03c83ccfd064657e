"""submitit (another project) on the SLURM testbed, through its own API: a
function's result, a job array, and a cancelled job, each with the state
submitit reads from Slurm's accounting (sacct). Without accounting every
state is UNKNOWN and a cancelled job never counts as done. Prints one line
per check; exits non-zero at the first that fails."""

import sys
import time

import submitit

DEADLINE = 120


def wait_for(what, condition):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"submitit: {what} not within {DEADLINE} s")
        time.sleep(1)


executor = submitit.AutoExecutor(folder="submitit-logs")
executor.update_parameters(timeout_min=5, cpus_per_task=1, slurm_mem="200M")

job = executor.submit(pow, 2, 10)
assert job.result() == 1024, job.result()
wait_for(f"job {job.job_id} COMPLETED (state {job.state})", lambda: job.state == "COMPLETED")
print("result 1024, state", job.state)

array = executor.map_array(pow, [1, 2, 3], [2, 2, 2])
assert [j.result() for j in array] == [1, 4, 9]
wait_for("the array's jobs COMPLETED", lambda: {j.state for j in array} == {"COMPLETED"})
print("array [1, 4, 9], states", sorted({j.state for j in array}))

sleeper = executor.submit(time.sleep, 600)
wait_for(f"job {sleeper.job_id} RUNNING (state {sleeper.state})", lambda: sleeper.state == "RUNNING")
sleeper.cancel()
wait_for(f"cancelled job {sleeper.job_id} done (state {sleeper.state})", sleeper.done)
print("cancelled, state", sleeper.state.split()[0])
