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
func TestMain(m *testing.M) {
	if os.Getenv("FDP_SHM_DIR") != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "fdp-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shm.Dir = dir
	os.Setenv("FDP_SHM_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
