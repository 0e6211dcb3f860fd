package pyclient

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInstall: the package is written once per version into a private
// directory, byte for byte as embedded, and Command puts it first on
// PYTHONPATH.
func TestInstall(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir, err := Install()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Install()
	if err != nil || again != dir {
		t.Fatalf("second Install: %q, %v; first %q", again, err, dir)
	}
	n := 0
	err = fs.WalkDir(Files(), "fdp", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		want, _ := fs.ReadFile(Files(), p)
		got, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: installed copy differs (%v)", p, err)
		}
		n++
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("%d files, %v", n, err)
	}
	fi, err := os.Stat(filepath.Dir(dir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory %s: %v %v, want mode 0700", filepath.Dir(dir), fi.Mode(), err)
	}
	t.Setenv("PYTHONPATH", "/elsewhere")
	argv, env := Command(dir, "/usr/bin/python3", "fdp.analysis")
	if !slices.Equal(argv, []string{"/usr/bin/python3", "-m", "fdp.analysis"}) {
		t.Fatalf("argv %q", argv)
	}
	if !slices.Contains(env, "PYTHONPATH="+dir+":/elsewhere") {
		t.Fatalf("PYTHONPATH not %s first: %q", dir, strings.Join(env, " "))
	}
}

// TestInterpreter: $FDP_PYTHON wins; one that cannot be found is an error
// naming it.
func TestInterpreter(t *testing.T) {
	t.Setenv("FDP_PYTHON", "/nonexistent/python9")
	if _, err := Interpreter(); err == nil || !strings.Contains(err.Error(), "/nonexistent/python9") {
		t.Fatalf("err %v", err)
	}
}
