package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// dumpJSON runs `engine dump --json args...` and returns the report.
func dumpJSON(t *testing.T, args ...string) (*inspect.Report, error) {
	t.Helper()
	out, _, err := engineCmd(t, append([]string{"dump", "--json"}, args...)...)
	if err != nil {
		return nil, err
	}
	var r inspect.Report
	require.NoError(t, json.Unmarshal([]byte(out), &r), "%s", out)
	return &r, nil
}

// TestDumpArgumentFileOrSegment: an argument that names an existing file
// is read as that file, a bare relative name too (`engine dump junk.bin`
// had opened fdp.junk.bin in the segment directory), and a file in the
// working directory named like a segment is the file; an argument naming
// no file is a segment name, with or without the "fdp." prefix; two
// arguments are an instance and a kind.
func TestDumpArgumentFileOrSegment(t *testing.T) {
	dir := useTempShm(t)
	inst, fileInst := uniqueInstance(), uniqueInstance()
	createSegment(t, shm.SegmentName(inst, "world"), fixture.World(self(inst)))
	cwd := t.TempDir()
	t.Chdir(cwd)
	require.NoError(t, os.WriteFile("junk.bin", fixture.World(self(fileInst)), 0o600))

	for _, arg := range []string{"junk.bin", filepath.Join(cwd, "junk.bin"), "./junk.bin"} {
		r, err := dumpJSON(t, arg)
		require.NoError(t, err, "dump %s", arg)
		require.Equal(t, fileInst, r.Header.Instance, "dump %s reads the file", arg)
		require.Equal(t, filepath.Join(cwd, "junk.bin"), mustAbs(t, r.Source), "dump %s", arg)
	}
	for _, args := range [][]string{{"fdp." + inst + ".world"}, {inst + ".world"}, {inst, "world"}} {
		r, err := dumpJSON(t, args...)
		require.NoError(t, err, "dump %q", args)
		require.Equal(t, inst, r.Header.Instance, "dump %q reads the segment", args)
		require.Equal(t, filepath.Join(dir, "fdp."+inst+".world"), r.Source, "dump %q", args)
	}

	// A file of the working directory named like the segment is the file.
	require.NoError(t, os.WriteFile(inst+".world", fixture.World(self(fileInst)), 0o600))
	r, err := dumpJSON(t, inst+".world")
	require.NoError(t, err)
	require.Equal(t, fileInst, r.Header.Instance, "the file shadows the segment")

	// Neither a file nor a segment: the error names the segment it tried.
	_, err = dumpJSON(t, "nosuch.bin")
	require.ErrorContains(t, err, filepath.Join(dir, "fdp.nosuch.bin"))
	// A directory is no file: the name is a segment name.
	require.NoError(t, os.Mkdir("a.dir", 0o700))
	_, err = dumpJSON(t, "a.dir")
	require.ErrorContains(t, err, filepath.Join(dir, "fdp.a.dir"))
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}
