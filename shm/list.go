package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Segment states reported by List.
const (
	StateLive         = "live"
	StateStale        = "stale"
	StateInitialising = "initialising"
	StateCorrupt      = "corrupt"
	StateForeign      = "foreign"
)

// Info describes one segment file.
type Info struct {
	Name, Path, Instance, Kind string
	Size                       int64
	Header                     *layout.Header
	PID                        uint32
	StartTime                  uint64
	State                      string
	Err                        error
}

// List describes every fdp.* file in Dir. It maps headers read-only and
// never writes or blocks.
func List() ([]Info, error) {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil, fmt.Errorf("fdp/shm: list %s: %w", Dir, err)
	}
	var out []Info
	for _, de := range ents {
		name := de.Name()
		if !strings.HasPrefix(name, Prefix) || strings.HasSuffix(name, ".sock") || strings.Contains(name, ".tmp") {
			continue
		}
		out = append(out, describe(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func describe(name string) Info {
	in := Info{Name: name, Path: filepath.Join(Dir, name)}
	in.Instance, in.Kind, _ = ParseName(name)
	var st unix.Stat_t
	if err := unix.Lstat(in.Path, &st); err != nil {
		in.State, in.Err = StateCorrupt, err
		return in
	}
	in.Size = st.Size
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(os.Geteuid()) {
		in.State, in.Err = StateForeign, errors.New("not a regular file owned by us")
		return in
	}
	s, err := open(in.Path, false, true)
	if err != nil {
		in.State, in.Err = StateCorrupt, err
		return in
	}
	defer s.Close()
	h, err := layout.DecodeHeader(s.Data)
	if h != nil {
		in.Header, in.PID, in.StartTime = h, h.CreatorPID, h.CreatorTime
	}
	alive := h != nil && ProcessAlive(h.CreatorPID, h.CreatorTime)
	switch {
	case err == nil && alive:
		in.State = StateLive
	case err == nil:
		in.State = StateStale
	case errors.Is(err, layout.ErrNotReady) && alive:
		in.State, in.Err = StateInitialising, err
	case errors.Is(err, layout.ErrNotReady):
		in.State, in.Err = StateStale, err
	default:
		in.State, in.Err = StateCorrupt, err
	}
	return in
}

// GC removes stale segments of instance ("" = every instance), and corrupt
// ones whose creator cannot be alive. It never removes a live or
// initialising segment.
func GC(instance string) (removed []string, err error) {
	infos, err := List()
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		if instance != "" && in.Instance != instance {
			continue
		}
		ok := in.State == StateStale || (in.State == StateCorrupt && (in.Header == nil || !ProcessAlive(in.PID, in.StartTime)))
		if !ok {
			continue
		}
		if err := unlinkPath(in.Path); err != nil {
			return removed, err
		}
		removed = append(removed, in.Name)
	}
	return removed, nil
}

// RemoveInstance unlinks every segment (and the control socket) of instance.
func RemoveInstance(instance string) error {
	if !layout.ValidInstanceName(instance) {
		return fmt.Errorf("fdp/shm: invalid instance %q", instance)
	}
	matches, err := filepath.Glob(filepath.Join(Dir, Prefix+instance+".*"))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if err := unlinkPath(m); err != nil {
			return err
		}
	}
	return nil
}
