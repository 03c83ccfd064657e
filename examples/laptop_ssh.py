"""Run a Dask computation on an HPC cluster from a laptop, submitting over SSH.

    python examples/laptop_ssh.py LOGIN --python /path/to/env/bin/python \
        (--scheduler-host ADDRESS | --on-login [--scheduler-host LOGIN-ADDRESS] [--detach]) \
        [--batch slurm|sge|htcondor|pbs]
    python examples/laptop_ssh.py --attach SESSION

With --detach the session outlives this process: it publishes its result and
leaves the cluster running; --attach SESSION (the id it printed, or see
`jqref list`) takes the cluster over from another process, prints the result
and closes it.

LOGIN is anything `ssh LOGIN` accepts, an alias from ~/.ssh/config included
(ProxyJump through a bastion works; the login node's host key must already be
in known_hosts); --python is the compute nodes' interpreter, with the same
Python and distributed versions as this one.

By default the Dask scheduler runs in this process, so ADDRESS must be an
address of this machine that the compute nodes can connect to. With
--on-login it runs on the login node instead (reached through a forwarded
port), for when they cannot; LOGIN-ADDRESS is then the login node's address on
the compute nodes' network, if it is not the one its default route uses.

Against the testbed (after `KEEP=1 make test-slurm` or `make up-slurm`):

    .venv/bin/python examples/laptop_ssh.py jqref-slurm-via-bastion \
        --ssh-config build/ssh/jqref-slurm.config --python /opt/jqref/bin/python3 \
        --scheduler-host "$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' jqref-slurm_default)"

and where the compute nodes cannot reach this machine (`ISOLATED=1 make up-slurm`):

    .venv/bin/python examples/laptop_ssh.py jqref-iso-slurm-login \
        --ssh-config build/ssh/jqref-iso-slurm.config --python /opt/jqref/bin/python3 \
        --on-login --scheduler-host "$(docker inspect -f '{{(index .NetworkSettings.Networks "jqref-iso-slurm_default").IPAddress}}' jqref-iso-slurm-login-1)"
"""  # noqa: E501 (a command to copy as it is)

import argparse

from dask.distributed import Client

import jqref

CLUSTERS = {
    "slurm": jqref.SLURMCluster,
    "sge": jqref.SGECluster,
    "htcondor": jqref.HTCondorCluster,
    "pbs": jqref.PBSCluster,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("login", nargs="?")
    parser.add_argument("--python", help="interpreter on the compute nodes")
    parser.add_argument("--scheduler-host", help="the scheduler's address as the compute nodes see it")
    parser.add_argument("--on-login", action="store_true", help="run the scheduler on the login node")
    parser.add_argument("--batch", choices=sorted(CLUSTERS), default="slurm")
    parser.add_argument("--ssh-config", default="~/.ssh/config")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--detach", action="store_true", help="with --on-login: leave the session running")
    parser.add_argument("--attach", metavar="SESSION", help="take over a detached session, show its result, close")
    args = parser.parse_args()
    if args.attach:
        with CLUSTERS[args.batch].attach(args.attach) as cluster, Client(cluster) as client:
            print(
                f"attached to {len(cluster.workers)} job(s); the published result:",
                client.get_dataset("total").result(),
            )
        return
    if not (args.login and args.python):
        parser.error("give LOGIN and --python")
    if not (args.on_login or args.scheduler_host):
        parser.error("give --scheduler-host (an address of this machine the compute nodes reach) or --on-login")

    runner = jqref.SSHRunner(args.login, config_file=args.ssh_config)
    cluster = CLUSTERS[args.batch](
        runner=runner,
        cores=1,
        memory="1 GiB",
        python=args.python,
        scheduler_on="login" if args.on_login else "client",
        scheduler_options={"host": args.scheduler_host} if args.scheduler_host else {},
        walltime="00:10:00",
        detach=args.detach,
    )
    client = Client(cluster)
    print(cluster.job_script())
    print("dashboard:", cluster.dashboard_link)
    cluster.scale(jobs=args.jobs)
    client.wait_for_workers(args.jobs, timeout=300)
    total = client.submit(sum, client.map(lambda x: x * x, range(1000)))
    print(f"sum of squares below 1000, computed on {args.jobs} batch jobs: {total.result()}")
    if args.detach:
        client.publish_dataset(total=total)
        print(f"left running: python {__file__} --attach {cluster.batch.record.id} --batch {args.batch}")
        return  # no close(): the scheduler on the login node keeps the cluster until it is idle
    client.close()
    cluster.close()  # every job is cancelled


if __name__ == "__main__":
    main()
