#!/usr/bin/env bash
# Configure the cell unattended, on the master, once sge_qmaster is up.
#
# Every step writes a complete object file and loads it with `qconf -A*`
# (add) or `qconf -M*` (modify), so the script can run again after a restart.
# The queue comes last: the exec nodes wait for it before starting sge_execd,
# because the execd takes min_uid/min_gid from the global configuration only
# when it starts.
set -euo pipefail

EXEC_HOSTS=${SGE_EXEC_HOSTS:-compute1 compute2}
SUBMIT_HOSTS=${SGE_SUBMIT_HOSTS:-login $EXEC_HOSTS}
SLOTS_PER_HOST=${SGE_SLOTS_PER_HOST:-2}
MEM_PER_HOST=${SGE_MEM_PER_HOST:-3G}
WAIT=${SGE_START_TIMEOUT:-240}

log() { printf 'sge-configure[%s]: %s\n' "$(hostname)" "$*"; }
die() { log "$*"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

deadline=$((SECONDS + WAIT))
until qconf -sh >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "sge_qmaster does not answer after ${WAIT}s"
    sleep 1
done

# add_or_modify SHOW_FLAG ADD_FLAG MODIFY_FLAG NAME FILE
add_or_modify() {
    if qconf "$1" "$4" >/dev/null 2>&1; then
        qconf "$3" "$5"
    else
        qconf "$2" "$5"
    fi
}

# Host lists. Admin rights let the exec nodes poll the configuration (and
# run qconf for debugging); submit rights let jobs submit jobs.
for h in $EXEC_HOSTS; do
    qconf -sh 2>/dev/null | grep -qx "$h" || qconf -ah "$h"
done
for h in $SUBMIT_HOSTS; do
    qconf -ss 2>/dev/null | grep -qx "$h" || qconf -as "$h"
done

# Global configuration: let any uid/gid run jobs (root included), start job
# scripts with the interpreter named by their #! line, and report load every
# 10 s so new exec hosts show load values quickly.
qconf -sconf global | sed -E \
    -e 's/^(min_uid[[:space:]]+).*/\10/' \
    -e 's/^(min_gid[[:space:]]+).*/\10/' \
    -e 's/^(shell_start_mode[[:space:]]+).*/\1unix_behavior/' \
    -e 's/^(load_report_time[[:space:]]+).*/\100:00:10/' \
    >"$tmp/global"
qconf -Mconf "$tmp/global"

# Scheduler: a pass every second, and no artificial load added per started
# job (the exec hosts share this machine's load anyway).
qconf -ssconf | sed -E \
    -e 's/^(schedule_interval[[:space:]]+).*/\10:0:1/' \
    -e 's/^(job_load_adjustments[[:space:]]+).*/\1NONE/' \
    -e 's/^(load_adjustment_decay_time[[:space:]]+).*/\10:0:0/' \
    >"$tmp/sched"
qconf -Msconf "$tmp/sched"

# Make mem_free consumable: `-l mem_free=1G` then books 1G per slot against
# the host's complex_values. h_vmem stays a plain (enforced) limit.
qconf -sc | awk '$1 == "mem_free" { $6 = "YES" } { print }' >"$tmp/complexes"
qconf -Mc "$tmp/complexes" >/dev/null

for h in $EXEC_HOSTS; do
    cat >"$tmp/exechost" <<EOF
hostname              $h
load_scaling          NONE
complex_values        mem_free=$MEM_PER_HOST
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
    add_or_modify -se -Ae -Me "$h" "$tmp/exechost"
done

cat >"$tmp/hostgroup" <<EOF
group_name @allhosts
hostlist $EXEC_HOSTS
EOF
add_or_modify -shgrp -Ahgrp -Mhgrp @allhosts "$tmp/hostgroup"

cat >"$tmp/pe" <<EOF
pe_name            smp
slots              64
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
add_or_modify -sp -Ap -Mp smp "$tmp/pe"

# The queue: no load thresholds (the testbed shares two cores with whatever
# else runs, and an overloaded host would stop taking jobs), bash as the
# shell for scripts without #!, unix_behavior so #! lines are honoured.
cat >"$tmp/queue" <<EOF
qname                 all.q
hostlist              @allhosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SLOTS_PER_HOST
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
add_or_modify -sq -Aq -Mq all.q "$tmp/queue"

log "cell configured: queue all.q on $EXEC_HOSTS ($SLOTS_PER_HOST slots, mem_free=$MEM_PER_HOST each), pe smp"
