#!/usr/bin/env bash
# hugepages.sh: does the publish copy faster into huge pages? Publishes one
# world into segments on /dev/shm (4 KiB pages), on a tmpfs mounted with
# huge=always in a temporary directory, and (when shmem_enabled can be set to
# advise for the run) on /dev/shm with madvise(MADV_HUGEPAGE), interleaved in
# one run, next to memcpy variants of the same bytes (see `plot huge`).
# Needs root for the mount; every system setting is restored on exit.
#
# Usage: docs/plot/hugepages.sh [sizes]   (default 1000000,3000000,10000000)
set -euo pipefail
sizes=${1:-1000000,3000000,10000000}
mnt=$(mktemp -d /tmp/fdp-huge.XXXXXX)
knob=/sys/kernel/mm/transparent_hugepage/shmem_enabled
old=$(sed 's/.*\[\(.*\)\].*/\1/' "$knob")
cleanup() {
	echo "$old" >"$knob" 2>/dev/null || true
	umount "$mnt" 2>/dev/null || true
	rmdir "$mnt" 2>/dev/null || true
	rm -f /dev/shm/fdp.plot*
}
trap cleanup EXIT
mount -t tmpfs -o huge=always,size=16G tmpfs "$mnt"
madv=
if echo advise >"$knob" 2>/dev/null; then madv=-madvise; fi
echo "shmem_enabled: was $old, during the run $(cat "$knob"); huge tmpfs at $mnt"
before=$(awk '/ShmemHugePages/ {print $2}' /proc/meminfo)
go run ./docs/plot huge -dirs "huge tmpfs=$mnt" $madv -sizes "$sizes"
echo "ShmemHugePages before the run: ${before} kB"
