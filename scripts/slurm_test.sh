#!/usr/bin/env bash
# A real Slurm on this machine (issue 15): installs Debian's slurm-wlm and munge where missing (as root, like
# scripts/setup.sh), starts munged, slurmctld and slurmd on localhost with a private one-node configuration,
# submits a small sweep with `tqbench submit --slurm --tasks 3`, requeues one array task after its first
# finished point, waits (bounded) for the merge job, and checks that the merged rows equal a single-process
# run and that the requeued task resumed (kept its finished point). Stops the daemons it started.
# Prints "SKIPPED: why" and exits 0 where Slurm cannot run (not root, no apt, daemons that do not start).
#   scripts/slurm_test.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
tqbench=$build/tqbench
skip() { echo "SKIPPED: $*"; exit 0; }
fail() { echo "FAILED: $*"; [[ -n ${state:-} ]] && tail -n 20 "$state"/*.log 2>/dev/null; exit 1; }

[[ $(id -u) -eq 0 ]] || skip "a local Slurm needs root (to install slurm-wlm and munge and run slurmd)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm-wlm and munge are missing and there is no apt-get to install them"
  echo "installing slurm-wlm and munge (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1; } ||
    skip "apt-get could not install slurm-wlm and munge"
fi

state=$(mktemp -d /tmp/tqb-slurm.XXXXXX)
work=$state/work
mkdir -p "$state/ctld" "$state/d" "$work" "$state/munge"
chmod 755 "$state"  # munged wants its socket reachable
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [[ -f $state/slurmctld.pid ]] && kill "$(cat "$state/slurmctld.pid")" 2>/dev/null
  [[ -f $state/slurmd.pid ]] && kill "$(cat "$state/slurmd.pid")" 2>/dev/null
  [[ -f $state/munged.pid ]] && kill "$(cat "$state/munged.pid")" 2>/dev/null
  sleep 1
  [[ ${TQB_KEEP_SLURM_STATE:-0} == 1 ]] || rm -rf "$state"
}
trap cleanup EXIT

# munge: a private key and socket, so that a system munged (if any) is left alone.
dd if=/dev/urandom bs=1 count=1024 of="$state/munge/munge.key" 2>/dev/null
chmod 400 "$state/munge/munge.key"
socket=$state/munge/munge.socket
munged --force --key-file="$state/munge/munge.key" --socket="$socket" --pid-file="$state/munged.pid" \
  --log-file="$state/munged.log" --seed-file="$state/munge/seed" 2>"$state/munged.err" ||
  skip "munged does not start here: $(head -c 300 "$state/munged.err")"

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
conf=$state/slurm.conf
cat > "$conf" <<CONF
ClusterName=tqblocal
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ReturnToService=2
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf
slurmctld -f "$conf" -i 2>"$state/slurmctld.err" || skip "slurmctld does not start here: $(head -c 300 "$state/slurmctld.err")"
slurmd -f "$conf" 2>"$state/slurmd.err" || skip "slurmd does not start here: $(head -c 300 "$state/slurmd.err")"
ready=0
for _ in $(seq 1 30); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then ready=1; break; fi
  sleep 1
done
[[ $ready -eq 1 ]] || skip "the local Slurm node did not become ready in 30 s ($(sinfo -h 2>&1 | head -1); $(tail -n 3 "$state/slurmd.log" 2>/dev/null))"

# A small sweep whose points take about a second each (Haar rotations of 1024 columns), 12 points, 4 per
# shard, so that the requeue below interrupts task 0 with points still to run.
spec=$work/slurm-test.yaml
cat > "$spec" <<'SPEC'
experiment: slurm-test
seed: 5
data: {source: gaussian, rows: 4096, cols: 1024}
quantizers:
  - family: turboquant
    bits: [2, 3, 4]
    group: [32, 64, 128, row]
    rotation: haar
metrics: [weight_nmse, bits_per_weight, weight_mse, ip_bias]
SPEC
cd "$work"
out=$("$tqbench" submit "$spec" --slurm --tasks 3 --cpus-per-task 1 --time 00:10:00 -o "$work/merged.h5") || fail "submit: $out"
echo "$out"
array_id=$(sed -n 's/^submitted array job \([0-9]*\).*/\1/p' <<<"$out")
merge_id=$(sed -n 's/.* and merge job \([0-9]*\).*/\1/p' <<<"$out")
[[ -n $array_id && -n $merge_id ]] || fail "could not read the job ids from: $out"

# Requeue task 0 once its shard holds a finished point: it must resume, not start over.
shard0=$work/slurm-test.shard-0-of-3.h5
requeued=0
for _ in $(seq 1 120); do
  rows=$("$tqbench" show "$shard0" --csv --columns point 2>/dev/null | tail -n +2 | wc -l)
  if [[ ${rows:-0} -ge 1 ]]; then
    scontrol requeue "${array_id}_0" && requeued=1
    echo "requeued task ${array_id}_0 after $rows finished point(s)"
    break
  fi
  sleep 0.5
done
[[ $requeued -eq 1 ]] || fail "task 0 finished no point within 60 s, or could not be requeued"
# Slurm holds a requeued job for about two minutes (its begin time); release it now to keep the test short.
for _ in $(seq 1 40); do
  if [[ $(squeue -h -j "${array_id}_0" -o %T 2>/dev/null) == PENDING ]]; then
    scontrol update JobId="${array_id}_0" StartTime=now >/dev/null 2>&1 && break
  fi
  sleep 0.5
done

deadline=$((SECONDS + 300))
while squeue -h -j "$array_id,$merge_id" 2>/dev/null | grep -q .; do
  [[ $SECONDS -lt $deadline ]] || { scancel "$array_id" "$merge_id"; fail "the jobs did not finish within 300 s: $(squeue -h 2>&1 | head -5)"; }
  sleep 2
done
[[ -f $work/merged.h5 ]] || fail "the merge job wrote no $work/merged.h5 ($(cat "$work/slurm-test.slurm/merge.log" 2>/dev/null))"
log0=$work/slurm-test.slurm/shard-0.log
grep -q "restart 1" "$log0" || fail "task 0 was not restarted: $(cat "$log0")"
# The restarted task ran fewer points than its shard holds: the finished one was kept.
last=$(grep "points of shard 0/3" "$log0" | tail -n 1)
echo "task 0 after its restart: $last"
total=$(sed -n 's/^.*: \([0-9]*\) points of shard.*/\1/p' <<<"$last")
ran=$(sed -n 's/^.*(\([0-9]*\) run now.*/\1/p' <<<"$last")
[[ -n $total && -n $ran && $ran -lt $total ]] || fail "the restarted task did not resume its shard ($last)"

"$tqbench" run "$spec" -o "$work/single.h5" >/dev/null || fail "the single-process run failed"
cols=point,key,status,data,quantizer,weight_nmse,bits_per_weight,weight_mse,ip_bias,seed,data_seed,git_commit
"$tqbench" show "$work/merged.h5" --csv --columns $cols >"$work/merged.csv" || fail "show merged"
"$tqbench" show "$work/single.h5" --csv --columns $cols >"$work/single.csv" || fail "show single"
diff "$work/merged.csv" "$work/single.csv" >/dev/null || fail "merged rows differ from the single-process run: $(diff "$work/merged.csv" "$work/single.csv" | head)"
echo "PASSED: 3 Slurm array tasks (one requeued and resumed) and the merge job equal a single-process run, row for row ($(($(wc -l <"$work/single.csv") - 1)) points)"
