#!/usr/bin/env bash
# A/B(/C) of the consensus latency benchmark across checkouts: runs
#   npm run -s bench -- consensus --rates 100 --seconds 10 --kills 0
# in each checkout given (each a git worktree with node_modules), ROUNDS rounds (default 4), the order
# rotated every round so a load trend favours none; one line per run with the load averages, the
# "accepted -> assignment committed" line and the node CPU per intent. Example, against the commit before
# issue 9:
#   git worktree add --detach /tmp/base 9efb87b && ln -s "$PWD/node_modules" /tmp/base/node_modules
#   bench/ab.sh /tmp/base "$PWD" > ab.txt
set -uo pipefail
dirs=("$@")
n=${#dirs[@]}
if [ "$n" -lt 2 ]; then echo "usage: bench/ab.sh DIR_A DIR_B [DIR_C ...]" >&2; exit 2; fi
for i in $(seq 1 "${ROUNDS:-4}"); do
  for k in $(seq 0 $((n - 1))); do
    d=${dirs[$(( (i + k) % n ))]}
    res=$(cd "$d" && timeout 300 npm run -s bench -- consensus --rates 100 --seconds 10 --kills 0 2>&1)
    lat=$(echo "$res" | grep "accepted -> assignment committed" | head -1)
    cpu=$(echo "$res" | grep "node CPU" | head -1 | sed 's/.*: node CPU until every intent ended: //; s/ (4 nodes.*//')
    echo "$(date +%H:%M:%S) $d $(cut -d' ' -f1-3 /proc/loadavg) $lat | cpu $cpu"
  done
done
