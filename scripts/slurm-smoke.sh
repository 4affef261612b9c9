#!/usr/bin/env bash
# SLURM smoke test: the shipped profiles/slurm on a real one-node SLURM cluster stood up on this machine.
#
#   sudo bash scripts/slurm-smoke.sh      # as root, from anywhere in the checkout (.ci/run calls it when it can)
#
# 1. installs slurm-wlm and munge (apt-get) when they are missing;
# 2. starts munged as the munge user and slurmctld + slurmd from a one-node slurm.conf written from `slurmd -C`
#    (select/cons_tres, proctrack/linuxproc, no accounting database), all under a private folder and ports, so a
#    SLURM or munge already on the machine is left alone; waits until `sinfo` shows the node idle;
# 3. builds two smoke targets, a chapter-1 figure (training with checkpoints) and a chapter-5 figure, through
#    profiles/slurm unedited, with the command-line settings docs/cluster.md documents for a cluster without an
#    accounting database (--slurm-status-command squeue) and a quick first status check;
# 4. scancels the chapter-1 training job once it has written a checkpoint, and checks that Snakemake resubmitted it
#    (the profile's `retries: 1`), that the new attempt resumed from the checkpoint, that the cancelled attempt's log
#    was kept, and that both experiments' metrics.csv equal those of a local run (byte for byte; chapter 5's but
#    for the seconds each Hessian took);
# 5. stops the daemons by their PIDs and removes the folder (SLURM_SMOKE_KEEP=1 keeps it).
#
# The tier is config/smoke.yaml with two experiments; the chapter-1 one trains to its iteration cap (loss threshold
# 1e-20: about 1,000,000 steps, half a minute) so that there is a run to cancel. Exit status 0 only if every check
# passed. Budget: about 5 minutes on 2 cores.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$SECONDS
python=${PYTHON:-$(command -v python3)}
snakemake=${SNAKEMAKE:-$(command -v snakemake || true)}
ch1=dmf_2x2_norms_vs_rank
ch5=hessian_rank_vs_sample_size
tier=slurm-smoke

say() { printf '[slurm-smoke %4ds] %s\n' $((SECONDS - started)) "$*"; }
fail() {
    say "FAILED: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs packages and starts munged, slurmctld and slurmd)"
[ -n "$snakemake" ] || fail "snakemake is not on PATH (pip install -e '.[slurm]')"
"$python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    fail "snakemake-executor-plugin-slurm is not installed for $python (pip install -e '.[slurm]')"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurm-wlm munge >/dev/null || {
        apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
    }
fi

work=$(mktemp -d /tmp/rankrepro-slurm.XXXXXX)
chmod 755 "$work"
pids=()
conf_owner=none # "ours" once this script wrote /etc/slurm/slurm.conf (removed again at the end)
cleanup() {
    local status=$?
    for pidfile in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munge/private/munged.pid"; do
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    [ "$conf_owner" != ours ] || rm -f /etc/slurm/slurm.conf
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [ $status -ne 0 ]; then
        for log in slurmctld.log slurmd.log cluster.log local.log; do
            [ -s "$work/$log" ] && { echo "--- tail of $log"; tail -n 30 "$work/$log"; }
        done
    fi
    if [ "${SLURM_SMOKE_KEEP:-0}" = 1 ]; then
        say "kept $work"
    else
        sleep 1
        rm -rf "$work"
    fi
    say "daemons stopped; $([ $status -eq 0 ] && echo passed || echo failed) in $((SECONDS - started)) s"
}
trap cleanup EXIT

# --- munge: a private key, socket and PID file, the daemon running as the munge user
mkdir -p "$work/munge"
if [ -r /etc/munge/munge.key ]; then
    cp /etc/munge/munge.key "$work/munge/munge.key"
else
    head -c 1024 /dev/urandom >"$work/munge/munge.key"
fi
mkdir -p "$work/munge/private" "$work/munge/socket"
mv "$work/munge/munge.key" "$work/munge/private/munge.key"
chown -R munge:munge "$work/munge"
chmod 755 "$work/munge" "$work/munge/socket" # munged: the socket's folder must be searchable by all
chmod 700 "$work/munge/private"
chmod 400 "$work/munge/private/munge.key"
socket="$work/munge/socket/munge.socket.2"
runuser -u munge -- munged --socket="$socket" --key-file="$work/munge/private/munge.key" \
    --pid-file="$work/munge/private/munged.pid" --log-file="$work/munge/private/munged.log" \
    --seed-file="$work/munge/private/munged.seed"
say "munged running (pid $(cat "$work/munge/private/munged.pid"))"

# --- slurm.conf: one node, as `slurmd -C` describes this machine. It must lie at the default path: the jobs' own
# srun calls (snakemake-executor-plugin-slurm-jobstep) drop SLURM_CONF from their environment.
node_line=$(slurmd -C | head -n 1)
node_name=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node_line")
slurm_conf=/etc/slurm/slurm.conf
marker="# written by rankrepro scripts/slurm-smoke.sh"
if [ -e "$slurm_conf" ] && ! grep -qxF "$marker" "$slurm_conf"; then
    fail "$slurm_conf exists: this machine has a SLURM of its own; run the smoke test on a machine without one"
fi
mkdir -p /etc/slurm "$work/state" "$work/spool"
conf_owner=ours
cat >"$slurm_conf" <<EOF
$marker
ClusterName=rankrepro-smoke
SlurmctldHost=$node_name(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=smoke Nodes=$node_name Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld
slurmd
for _ in $(seq 60); do
    [ "$(sinfo -h -o %T 2>/dev/null | head -n 1)" = idle ] && break
    sleep 1
done
[ "$(sinfo -h -o %T | head -n 1)" = idle ] || fail "the node did not become idle: $(sinfo 2>&1)"
say "slurmctld (pid $(cat "$work/slurmctld.pid")) and slurmd (pid $(cat "$work/slurmd.pid")) up; node idle"

# --- the tier: config/smoke.yaml, two experiments; the chapter-1 one trains to its cap (a run worth cancelling)
"$python" - "$repo/config/smoke.yaml" "$work/$tier.yaml" "$tier" "$ch1" "$ch5" <<'EOF'
import sys
import yaml
source, target, tier, ch1, ch5 = sys.argv[1:]
config = yaml.safe_load(open(source, encoding="utf-8"))
config["tier"] = tier
config["experiments"] = {name: config["experiments"][name] for name in (ch1, ch5)}
config["experiments"][ch1]["loss_threshold"] = 1.0e-20
with open(target, "w", encoding="utf-8") as handle:
    yaml.safe_dump(config, handle, sort_keys=False)
EOF
targets=("figures/$tier/ch1/$ch1.png" "figures/$tier/ch5/$ch5.png")
metrics=("results/$tier/ch1/$ch1/metrics.csv" "results/$tier/ch5/$ch5/metrics.csv")

# --- the reference: the same targets' results built locally (one core, in the background)
"$snakemake" --configfile="$work/$tier.yaml" --directory "$work/local" --cores 1 "${metrics[@]}" \
    >"$work/local.log" 2>&1 &
local_pid=$!
pids+=("$local_pid")

# --- the cluster run through profiles/slurm, unedited
say "snakemake --workflow-profile profiles/slurm ${targets[*]}"
"$snakemake" --configfile="$work/$tier.yaml" --directory "$work/cluster" --workflow-profile profiles/slurm \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 "${targets[@]}" \
    >"$work/cluster.log" 2>&1 &
cluster_pid=$!
pids+=("$cluster_pid")

# --- cancel the chapter-1 training job once it has written a checkpoint
checkpoint="$work/cluster/results/$tier/ch1/$ch1/checkpoints/batch.pt"
for _ in $(seq 240); do
    [ -s "$checkpoint" ] && break
    kill -0 "$cluster_pid" 2>/dev/null || fail "snakemake ended before the chapter-1 job wrote a checkpoint"
    sleep 0.5
done
[ -s "$checkpoint" ] || fail "no checkpoint of the chapter-1 job after 2 minutes"
job=$(squeue -h -t RUNNING -o '%i %k' | awk -v name="$ch1" 'index($2, name) && index($2, "rule_run") {print $1}')
[ -n "$job" ] || fail "no running SLURM job for $ch1: $(squeue -o '%i %T %k')"
scancel "$job"
say "checkpoint written; scancel $job (the $ch1 training job)"

wait "$cluster_pid" || fail "the cluster run failed (see cluster.log)"
say "cluster run done"
wait "$local_pid" || fail "the local run failed (see local.log)"
say "local run done"

# --- checks
grep -q "sbatch" "$work/cluster.log" || grep -q "SLURM run ID" "$work/cluster.log" || fail "no job went through sbatch"
for target in "${targets[@]}"; do
    [ -s "$work/cluster/$target" ] || fail "missing $target"
done
grep -q "SLURM status is: 'CANCELLED'" "$work/cluster.log" || fail "Snakemake did not see the job cancelled"
grep -q "Trying to restart job" "$work/cluster.log" || fail "Snakemake did not resubmit the cancelled job"
log="$work/cluster/logs/$tier/ch1/$ch1.run.log"
[ -s "$log.1" ] || fail "the cancelled attempt's log $log.1 was not kept"
grep -q "resuming from checkpoint" "$log" || fail "the resubmitted $ch1 job did not resume from its checkpoint"
say "resubmitted job resumed: $(grep -o 'resuming from checkpoint.*' "$log" | sed "s|$work/cluster/||")"
cmp "$work/cluster/${metrics[0]}" "$work/local/${metrics[0]}" || fail "${metrics[0]} differs from the local run's"
# chapter 5 records the seconds each Hessian took (column time_s): every other value must be equal
"$python" - "$work/cluster/${metrics[1]}" "$work/local/${metrics[1]}" <<'EOF' ||
import csv
import sys
def values(path):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    return [{key: value for key, value in row.items() if not key.endswith("time_s")} for row in rows]
cluster, local = (values(path) for path in sys.argv[1:])
sys.exit(0 if cluster == local and cluster else 1)
EOF
    fail "${metrics[1]} differs from the local run's"
say "metrics.csv equal the local run's: $ch1 byte for byte, $ch5 but for its timing column"
