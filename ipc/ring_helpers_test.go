package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

// Test helpers for the ring and futex tests: shared segments in /dev/shm
// (or FDP_SHM_DIR) mapped with plain mmap, and child processes that re-exec
// the test binary into TestRingChildProcess with FDP_RING_CHILD=<role>.

const ringChildEnv = "FDP_RING_CHILD"

func ringShmDir() string {
	if d := os.Getenv("FDP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// ringCreateModule creates, maps and initialises a module segment with a ring
// of ringCap bytes; it is unmapped and unlinked at cleanup.
func ringCreateModule(t testing.TB, ringCap int) (string, *layout.Module) {
	t.Helper()
	inst := fmt.Sprintf("r%d%x", os.Getpid(), rand.Uint32())
	g, err := layout.ComputeModuleGeometry(ringCap)
	require.NoError(t, err)
	path := filepath.Join(ringShmDir(), layout.ModuleSegmentName(inst, 0))
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(path) })
	require.NoError(t, unix.Ftruncate(fd, int64(g.TotalSize)))
	b, err := unix.Mmap(fd, 0, g.TotalSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	_ = unix.Close(fd)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(b) })
	info := layout.ModuleInfo{Slot: 0, Name: "ringtest", Tier: 1, Frequency: 60, Mask: [layout.MaxMaskWords]uint64{1}}
	require.NoError(t, layout.EncodeModule(b, g, layout.Header{Instance: inst, CreatorPID: uint32(os.Getpid())}, info))
	layout.MarkReady(b)
	m, err := layout.DecodeModule(b)
	require.NoError(t, err)
	return path, m
}

// ringOpenModule maps an existing module segment (child side).
func ringOpenModule(path string) (*layout.Module, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	b, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return layout.DecodeModule(b)
}

// ringAnonRegion returns a page-aligned private anonymous mapping holding an
// initialised ring region of capacity bytes.
func ringAnonRegion(t testing.TB, capacity int) []byte {
	t.Helper()
	n := layout.RingRegionSize(capacity)
	require.Positive(t, n)
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(b) })
	require.NoError(t, layout.EncodeRing(b, capacity))
	return b
}

type ringChild struct {
	cmd *exec.Cmd
	out ringLockedBuffer
}

// ringLockedBuffer collects a child's output; safe to read while it runs.
type ringLockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *ringLockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *ringLockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ringStartChild re-executes the test binary as a helper process.
func ringStartChild(t testing.TB, role string, env ...string) *ringChild {
	t.Helper()
	c := &ringChild{}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestRingChildProcess$", "-test.count=1")
	// The race runtime sleeps 1 s at exit by default; children need not.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	c.cmd.Env = append(append(os.Environ(), ringChildEnv+"="+role, "GORACE="+gorace), env...)
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = &c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, c.cmd.Start())
	return c
}

// wait waits for a child that must exit with status 0.
func (c *ringChild) wait(t testing.TB) {
	t.Helper()
	require.NoError(t, c.cmd.Wait(), "child output:\n%s", c.out.String())
}

// ringExitedBySignal reports whether err says the process was killed by sig.
func ringExitedBySignal(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// TestRingChildProcess is the entry point of the helper processes; it is
// skipped in a normal run.
func TestRingChildProcess(t *testing.T) {
	role := os.Getenv(ringChildEnv)
	if role == "" {
		t.Skip("helper process for the ring and futex tests")
	}
	var err error
	switch role {
	case "batch-producer":
		err = ringChildBatchProducer()
	case "bench-consumer":
		err = ringChildBenchConsumer()
	case "raw-consumer":
		err = ringChildRawConsumer()
	case "futex-waiter":
		err = futexChildWaiter()
	case "futex-pong":
		err = futexChildPong()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		os.Exit(3)
	}
	os.Exit(0)
}

// ---- self-checking batches ----
//
// Every record of a batch carries: batch id u64, index u32, count u32,
// checksum u64 (over the rest of the payload), then fill bytes derived from
// (batch id, index). Aborted batches use count ringAbortedCount and must
// never be seen.

const (
	ringBatchHdr      = 24
	ringAbortedCount  = 0xFFFFFFFF
	ringBatchRecType  = 7
	ringMaxBatch      = 32
	ringMaxBatchBytes = 232
)

func ringFillRecord(p []byte, batch uint64, idx, count uint32) {
	binary.LittleEndian.PutUint64(p[0:], batch)
	binary.LittleEndian.PutUint32(p[8:], idx)
	binary.LittleEndian.PutUint32(p[12:], count)
	x := batch*0x9E3779B97F4A7C15 ^ uint64(idx)<<32 | 1
	for i := ringBatchHdr; i < len(p); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
	binary.LittleEndian.PutUint64(p[16:], ringChecksum(p))
}

func ringChecksum(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for i, c := range p {
		if i >= 16 && i < 24 {
			continue
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h ^ uint64(len(p))
}

// ringBatchChecker validates a stream of self-checking batches.
type ringBatchChecker struct {
	open      bool
	batch     uint64
	next      uint32
	count     uint32
	last      uint64 // last completed batch id
	haveLast  bool
	batches   int
	records   int
	lastCount uint32
}

func (c *ringBatchChecker) record(typ uint16, p []byte) error {
	if typ != ringBatchRecType {
		return fmt.Errorf("record type %d", typ)
	}
	if len(p) < ringBatchHdr {
		return fmt.Errorf("record of %d bytes", len(p))
	}
	batch := binary.LittleEndian.Uint64(p[0:])
	idx := binary.LittleEndian.Uint32(p[8:])
	count := binary.LittleEndian.Uint32(p[12:])
	if sum := binary.LittleEndian.Uint64(p[16:]); sum != ringChecksum(p) {
		return fmt.Errorf("batch %#x record %d: checksum mismatch", batch, idx)
	}
	if count == ringAbortedCount {
		return fmt.Errorf("batch %#x: aborted record %d delivered", batch, idx)
	}
	if !c.open {
		if idx != 0 {
			return fmt.Errorf("batch %#x starts at record %d of %d", batch, idx, count)
		}
		if c.haveLast && batch <= c.last {
			return fmt.Errorf("batch %#x after batch %#x (replay or reorder)", batch, c.last)
		}
		c.open, c.batch, c.next, c.count = true, batch, 0, count
	}
	if batch != c.batch || idx != c.next || count != c.count {
		return fmt.Errorf("got batch %#x record %d/%d, want batch %#x record %d/%d", batch, idx, count, c.batch, c.next, c.count)
	}
	c.next++
	c.records++
	if c.next == c.count {
		c.open = false
		c.last, c.haveLast = c.batch, true
		c.batches++
		c.lastCount = count
	}
	return nil
}

// closed fails if a batch is partially visible.
func (c *ringBatchChecker) closed() error {
	if c.open {
		return fmt.Errorf("partial batch visible: batch %#x has %d of %d records", c.batch, c.next, c.count)
	}
	return nil
}

// ringProduceBatch writes batch id with a random number of records of random
// sizes, spinning while the ring is full. If abort, the batch is aborted
// instead of committed.
func ringProduceBatch(p *Producer, rng *rand.Rand, batch uint64, abort bool) error {
	count := uint32(1 + rng.IntN(ringMaxBatch))
	cnt := count
	if abort {
		cnt = ringAbortedCount
	}
	for i := uint32(0); i < count; i++ {
		n := ringBatchHdr + rng.IntN(ringMaxBatchBytes-ringBatchHdr+1)
		for {
			buf, err := p.Reserve(ringBatchRecType, n)
			if errors.Is(err, ErrRingFull) {
				continue
			}
			if err != nil {
				return err
			}
			ringFillRecord(buf, batch, i, cnt)
			break
		}
	}
	if abort {
		p.Abort()
	} else {
		p.Commit()
	}
	return nil
}
