package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// mainArgsEnv carries RunMain's arguments to the child (separated by 0x1f,
// a byte no argument of these tests holds).
const mainArgsEnv = "FDP_TEST_MAIN_ARGS"

// MainChild is the child part of RunMain: in the child, it runs main with
// os.Args set to name and RunMain's arguments and exits 0 when main
// returns (main exits with its own status otherwise); in the parent it
// returns at once. Call it first in the body of the test RunMain names.
func MainChild(name string, main func()) {
	args, ok := os.LookupEnv(mainArgsEnv)
	if !ok {
		return
	}
	os.Args = append([]string{name}, strings.Split(args, "\x1f")...)
	main()
	os.Exit(0)
}

// RunMain runs a program's main with args in a child process (the test
// binary, running only test, whose body starts with MainChild) and returns
// its stdout, stderr and exit status. The child inherits the environment
// (FDP_SHM_DIR among it).
func RunMain(t testing.TB, test string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\x1f"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", test, err)
	}
	return out.String(), errb.String(), code
}

// GoBuild builds the main packages pkgs (import paths or patterns such as
// "github.com/fdp-engine/fdp/cmd/...") into a directory of the test and
// returns it: the binaries are named after their packages' directories.
func GoBuild(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}
