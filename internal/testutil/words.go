package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Words are 64-bit words in a file mapped shared by a test and its child
// processes: barriers, flags and counters that the processes of a test
// agree on without going through the engine. Each word has a cache line of
// its own (WordStride bytes), so that processes spinning on different
// words do not slow each other down.
type Words struct {
	Path string
	b    []byte
}

// WordStride is the distance between two words in the file.
const WordStride = 64

// CreateWords creates a file of n zero words in a temporary directory of
// the test and maps it; the file is removed and unmapped when the test
// ends. Children open it by its Path (OpenWords).
func CreateWords(t testing.TB, n int) *Words {
	t.Helper()
	path := filepath.Join(t.TempDir(), "words")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("words: %v", err)
	}
	if err := f.Truncate(int64(n * WordStride)); err != nil {
		f.Close()
		t.Fatalf("words: %v", err)
	}
	f.Close()
	w, err := OpenWords(path)
	if err != nil {
		t.Fatalf("words: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// OpenWords maps the words file at path (created by CreateWords).
func OpenWords(path string) (*Words, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 || st.Size()%WordStride != 0 {
		return nil, fmt.Errorf("words file %s: size %d is not a multiple of %d", path, st.Size(), WordStride)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("words file %s: %w", path, err)
	}
	return &Words{Path: path, b: b}, nil
}

// Len returns the number of words.
func (w *Words) Len() int { return len(w.b) / WordStride }

// Load atomically loads word i.
func (w *Words) Load(i int) uint64 { return layout.Load64(w.b, i*WordStride) }

// Store atomically stores v into word i.
func (w *Words) Store(i int, v uint64) { layout.Store64(w.b, i*WordStride, v) }

// Add atomically adds d to word i and returns the new value.
func (w *Words) Add(i int, d uint64) uint64 { return layout.Add64(w.b, i*WordStride, d) }

// Close unmaps the words.
func (w *Words) Close() error {
	if w.b == nil {
		return nil
	}
	err := syscall.Munmap(w.b)
	w.b = nil
	return err
}

// Yield gives up the CPU to any other runnable thread of the machine
// (sched_yield), as a spinning process should on a machine with fewer CPUs
// than spinners; runtime.Gosched only yields to this process's goroutines.
func Yield() {
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) //nolint:errcheck // cannot fail on Linux
}
