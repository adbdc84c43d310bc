#!/usr/bin/env bash
# A/B of `chord put` on disk: two chord binaries, alternating runs, same disk, same hour.
#
#   scripts/ab-put.sh OLD_CHORD NEW_CHORD [ROUNDS] [SIZE_MIB]
#
# Each run starts 5 headless nodes on 127.0.0.1:7100-7104 with --data in a temporary
# directory (k = 3), puts one random file of SIZE_MIB (default 1024) through the first
# node, prints the client's throughput and the nodes' CPU time (user + system, in clock
# ticks, the whole run, up to the end of the put), then gets the file back through the
# same node and prints that throughput, then stops the nodes and removes their data. Loopback only;
# every node is killed by the script, also on Ctrl-C. Build each binary from its own
# checkout with its own CARGO_TARGET_DIR (a shared target directory mixes binaries).
set -euo pipefail
old=${1:?old chord binary}; new=${2:?new chord binary}; rounds=${3:-6}; mib=${4:-1024}
work=$(mktemp -d)
pids=()
stop() { # SIGINT (a graceful leave), then SIGKILL for any node still there after 10 s
  [ ${#pids[@]} -eq 0 ] && return
  kill -INT "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    local alive=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
trap 'stop; rm -rf "$work"' EXIT
head -c $((mib << 20)) /dev/urandom > "$work/file.bin"
export CHORD_IDENTITY="$work/identity"
one() { # tag binary
  local tag=$1 bin=$2 d="$work/run"
  rm -rf "$d"; mkdir -p "$d"
  for i in 0 1 2 3 4; do
    local join=(); [ "$i" -gt 0 ] && join=(--join 127.0.0.1:7100)
    "$bin" node 127.0.0.1 $((7100 + i)) "${join[@]}" --headless --data "$d/data$i" \
      --replicas 3 >/dev/null 2>"$d/node$i.log" &
    pids+=($!)
    sleep 0.3
  done
  sleep 6 # the ring settles (1 s stabilization)
  sync
  local s e cpu=0
  s=$(date +%s.%N)
  "$bin" put "$work/file.bin" --node 127.0.0.1:7100 >/dev/null 2>&1 || echo "$tag: put FAILED"
  e=$(date +%s.%N)
  for p in "${pids[@]}"; do cpu=$((cpu + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  local gs ge
  gs=$(date +%s.%N)
  "$bin" get file.bin -o "$d/out.bin" --node 127.0.0.1:7100 >/dev/null 2>&1 || echo "$tag: get FAILED"
  ge=$(date +%s.%N)
  rm -f "$d/out.bin"
  printf '%s\tput %.1f MiB/s\tnode cpu %d ticks\tget %.1f MiB/s\n' "$tag" \
    "$(echo "$mib / ($e - $s)" | bc -l)" "$cpu" "$(echo "$mib / ($ge - $gs)" | bc -l)"
  stop
}
for r in $(seq "$rounds"); do
  one old "$old"
  one new "$new"
done
