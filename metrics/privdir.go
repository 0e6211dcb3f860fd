package metrics

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/fdp-engine/fdp/shm"
)

// privDirPrefix begins the name of up's private metrics directory (Up):
// fdp-metrics-<pid>-<start time>-<random> in os.TempDir, the creator's pid
// and start time (shm.ProcStartTime) in the name so that a directory left
// by a killed `engine up` is known stale (StaleDirs) by the next up and by
// `engine gc`.
const privDirPrefix = "fdp-metrics-"

// makePrivDir creates this process's private metrics directory (0700).
func makePrivDir() (string, error) {
	return os.MkdirTemp("", fmt.Sprintf("%s%d-%d-", privDirPrefix, os.Getpid(), shm.SelfStartTime()))
}

// StaleDirs returns the private metrics directories of `engine up`
// processes that are gone (killed before they could remove theirs), owned
// by this user. A directory whose name carries no creator (an older
// build's) is left alone.
func StaleDirs() []string {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), privDirPrefix+"*"))
	var out []string
	for _, p := range matches {
		f := strings.SplitN(strings.TrimPrefix(filepath.Base(p), privDirPrefix), "-", 3)
		if len(f) != 3 {
			continue
		}
		pid, err1 := strconv.ParseUint(f[0], 10, 32)
		start, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		st, err := os.Lstat(p)
		if err != nil || !st.IsDir() {
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != uint32(os.Getuid()) {
			continue
		}
		if !shm.ProcessAlive(uint32(pid), start) {
			out = append(out, p)
		}
	}
	return out
}

// RemoveStaleDirs removes StaleDirs and returns what it removed.
func RemoveStaleDirs() ([]string, error) {
	var removed []string
	for _, p := range StaleDirs() {
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("metrics: %w", err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}
