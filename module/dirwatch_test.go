package module

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDirWatch: a name appearing or disappearing in the directory wakes the
// watch (its poll interval starts over); opening, writing and closing an
// existing file, as the module's own attach attempts do, does not.
func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	w := newDirWatch(dir)
	defer w.close()
	if w.fd < 0 {
		t.Skip("no inotify")
	}
	ctx := context.Background()
	f := filepath.Join(dir, "fdp.x.world")
	for _, step := range []struct {
		what  string
		do    func() error
		woken bool
	}{
		{"create", func() error { return os.WriteFile(f, []byte("x"), 0o600) }, true},
		{"open, write, close", func() error { return os.WriteFile(f, []byte("y"), 0o600) }, false},
		{"rename in", func() error { return os.Rename(f, f+".prev") }, true},
		{"remove", func() error { return os.Remove(f + ".prev") }, true},
	} {
		// Drain what earlier steps left, then start from the longest poll.
		for w.poll = pollMax; ; w.poll = pollMax {
			if err := w.wait(ctx, pollMax); err != nil {
				t.Fatal(err)
			}
			if w.poll == pollMax {
				break
			}
		}
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if err := w.wait(ctx, pollMax); err != nil {
			t.Fatal(err)
		}
		if woken := w.poll == pollMin; woken != step.woken {
			t.Fatalf("%s: woken %v, want %v", step.what, woken, step.woken)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.wait(cctx, pollMax); err == nil {
		t.Fatal("wait ignored a cancelled context")
	}
}
