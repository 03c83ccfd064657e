#!/usr/bin/env bash
# A login node that ends long-running user processes, as many sites do (a
# cron job or daemon enforcing an age or CPU-time limit on login nodes):
# every 2 s, SIGKILL each process of USER that has run for more than LIMIT
# seconds, except the sshd processes that hold users' SSH sessions (a
# site's limit spares logins; it ends what they leave running).
# Run as root in the login container: tests/integration/test_scheduler_job.py
# starts it for the tests that need such a site, and stops it after them.
#   login-reaper.sh LIMIT [USER]     (USER: dask by default)
set -u
limit=${1:?usage: login-reaper.sh LIMIT_SECONDS [USER]}
user=${2:-dask}
while true; do
    ps -u "$user" -o pid=,etimes=,comm= | while read -r pid age command; do
        case $command in sshd*) continue ;; esac
        if [ "$age" -gt "$limit" ] && kill -KILL "$pid" 2>/dev/null; then
            echo "login-reaper: killed $command (pid $pid, $age s old; the limit is $limit s)"
        fi
    done
    sleep 2
done
