#!/usr/bin/env bash
# ceiling.sh: the 60-fps ceiling of this machine, i.e. the largest demo world
# that `engine up` with the demo's modules (supervisor/default.yaml) still runs
# at 60 published frames per second.
#
# Usage: docs/plot/ceiling.sh [N ...]      (run from the repository root)
#   N ...      entity counts tried first, ascending (default below); then the
#              gap between the largest that held 60 fps and the smallest
#              that did not is bisected down to RES entities.
#   DURATION   length of each run (default 20s); the first SKIP status lines
#              (default 5, one a second) are start-up and not counted.
#   PASS       a run holds 60 fps when the mean of its counted status lines
#              is at least PASS fps (default 59.0) and none is below MINFPS
#              (default 55).
#   RES        bisection resolution in entities (default 500000).
#
# Each run writes its supervisor log to $OUT/N.log (default OUT: a new
# directory under /tmp) and prints one row: fps mean and min of the status
# lines, the engine summary's frame time p50/p99, publish p50/p99, the MB
# copied per publish, and the modules' tick p99. Run `make build` first.
#
# What the demo changes per frame: its simulation moves every entity
# (Position of every chunk: 100% of the chunks, a third of the component
# bytes), the churn respawns about 8 entities a frame and the AI modules
# damage a few; `go run ./docs/plot sim -entities N` measures it.
set -euo pipefail

DURATION=${DURATION:-20s}
SKIP=${SKIP:-5}
PASS=${PASS:-59.0}
MINFPS=${MINFPS:-55}
RES=${RES:-500000}
OUT=${OUT:-$(mktemp -d /tmp/fdp-ceiling.XXXXXX)}
ENGINE=${ENGINE:-bin/engine}
INSTANCE=plotceil$$
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 2000000 3000000 4000000 6000000)

[ -x "$ENGINE" ] || { echo "ceiling: $ENGINE not built (make build)" >&2; exit 1; }
mkdir -p "$OUT"

# config N writes the demo config with the engine built for N entities and a
# start-up timeout that fits large worlds.
config() {
	sed -e "s/command: \[engine, run\]/command: [engine, run, --entities, $1]/" \
		-e 's/engine_start_timeout: [0-9a-z]*/engine_start_timeout: 300s/' \
		supervisor/default.yaml >"$OUT/$1.yaml"
	grep -q -- "--entities, $1" "$OUT/$1.yaml" || { echo "ceiling: cannot set --entities in the config" >&2; exit 1; }
}

# run N runs the demo for DURATION and prints its row; returns 0 if it held
# 60 fps.
run() {
	local n=$1 log="$OUT/$1.log"
	config "$n"
	"$ENGINE" up --config "$OUT/$n.yaml" --instance "$INSTANCE" --duration "$DURATION" >"$OUT/$n.out" 2>"$log" || true
	rm -f /dev/shm/fdp."$INSTANCE".*
	local fps
	fps=$(grep -o 'status: frame [0-9]*  [0-9.]* fps' "$log" | awk '{print $4}' | tail -n +$((SKIP + 1)))
	if [ -z "$fps" ]; then
		echo "| $n | no status line (see $log) | | | | | | |"
		return 1
	fi
	local mean min
	mean=$(echo "$fps" | awk '{s += $1; n++} END {printf "%.1f", s / n}')
	min=$(echo "$fps" | sort -g | head -1)
	local frame pub copied ticks
	frame=$(grep -o 'frame time p50 [^ ]* p99 [^ ]*' "$log" | tail -1 | awk '{print $4 " / " $6}')
	pub=$(grep -o 'publish p50 [^ ]* p99 [^;]*; [0-9]* publishes (.*MB copied' "$log" | tail -1)
	copied=$(echo "$pub" | awk '{for (i = 1; i <= NF; i++) { if ($i == "publishes") p = $(i-1); if ($i == "MB") m = $(i-1) }} END { if (p > 0) printf "%.1f", m / p }')
	pub=$(echo "$pub" | awk '{print $3 " / " $5}' | tr -d ';')
	ticks=$(grep -o 'module [a-z0-9-]* *ticks [0-9]* p50 [^ ]* p99 [^ ]*' "$log" | awk '{printf "%s %s, ", $2, $8}' | sed 's/, $//')
	local ok=no
	if awk -v m="$mean" -v lo="$min" -v p="$PASS" -v q="$MINFPS" 'BEGIN {exit !(m >= p && lo >= q)}'; then ok=yes; fi
	echo "| $n | $ok | $mean (min $min) | $frame | $pub | $copied | $ticks | $(cut -d' ' -f1 /proc/loadavg) |"
	[ $ok = yes ]
}

echo "machine: $(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg); runs of $DURATION; logs in $OUT"
echo
echo "| entities | 60 fps | fps mean (min) | frame p50 / p99 | publish p50 / p99 | MB copied per publish | module tick p99 | load after |"
echo "|---|---|---|---|---|---|---|---|"
good=0 bad=0
for n in "${sizes[@]}"; do
	if run "$n"; then good=$n; else bad=$n; break; fi
done
while [ "$bad" -gt 0 ] && [ $((bad - good)) -gt "$RES" ]; do
	mid=$(((good + bad) / 2 / 100000 * 100000))
	if [ "$mid" -le "$good" ]; then break; fi
	if run "$mid"; then good=$mid; else bad=$mid; fi
done
echo
if [ "$bad" -gt 0 ]; then
	echo "ceiling: $good entities hold 60 fps, $bad do not (resolution $RES)"
else
	echo "ceiling: at least $good entities (every size tried held 60 fps)"
fi
