package cli

import (
	"fmt"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/shm"
)

// TestMain gives the tests (and the examples) of package cli a private
// segment directory unless $FDP_SHM_DIR names one (a child process of a
// test gets its parent's); tests that need one of their own take it with
// useTempShm.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	// gc (without --instance) also removes killed `up`s' private metrics
	// directories from $TMPDIR: the tests that check its output exactly
	// get a $TMPDIR of their own, whatever other processes left in /tmp.
	tmp, err := os.MkdirTemp("", "fdp-cli-tmp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	os.Setenv("TMPDIR", tmp)
	if os.Getenv("FDP_SHM_DIR") != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fdp-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shm.Dir = dir
	os.Setenv("FDP_SHM_DIR", dir)
	return m.Run()
}
