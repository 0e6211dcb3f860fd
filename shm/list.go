package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Segment states reported by List.
const (
	StateLive         = "live"         // header valid and ready, creator alive
	StateStale        = "stale"        // creator dead (ready or not)
	StateInitialising = "initialising" // not (yet) ready, creator alive
	StateCorrupt      = "corrupt"      // not an FDP segment or invalid header; Info.Err says why
	StateForeign      = "foreign"      // owned by another user
)

// Info describes one segment file found by List.
type Info struct {
	Name, Path, Instance, Kind string // Instance and Kind are empty if the name does not parse
	Size                       int64
	Header                     *layout.Header // nil if the header could not be decoded
	PID                        uint32         // creator pid from the header
	StartTime                  uint64         // creator start time from the header
	State                      string         // one of the State* constants
	Err                        error          // why the segment is corrupt / foreign / not ready
	Locked                     bool           // a live process holds the creator lock (see Create)
	// Frame is the frame number in the latest word of a world segment (or an
	// aside copy of one) whose header decodes; 0 when nothing was published
	// or the header is unreadable.
	Frame uint64
	// Aside is the aside place of the segment when its name is an aside copy
	// of a world segment (fdp.<instance>.world.prev*), else NoAside.
	Aside Aside
	// KeptForRecovery marks an aside copy that its instance may still recover
	// from: no live world segment of the instance has published a frame at
	// or beyond the copy's. Removable, GC and `engine gc` never remove it.
	KeptForRecovery bool
}

// WorldKind is the kind part of an instance's world segment name.
const WorldKind = "world"

// Aside is a place where a starting engine keeps the world segment of a
// dead engine of its instance until its own first publish (see
// host.PrepareStart): the stale segment is renamed (rename(2) in Dir) to
// fdp.<instance>.<aside kind> instead of being removed, so that an engine
// killed between its recovery and its first publish loses nothing.
type Aside int

// Aside places. Two places suffice: a start keeps at most the newest
// recoverable world and, when another one holds a higher frame number, that
// one too (frame numbers never go backwards).
const (
	NoAside    Aside = iota
	AsidePrev        // fdp.<instance>.world.prev
	AsidePrev2       // fdp.<instance>.world.prev2
)

// Asides lists every aside place.
var Asides = []Aside{AsidePrev, AsidePrev2}

// Kind returns the kind part of the place's segment name ("" for NoAside).
func (a Aside) Kind() string {
	switch a {
	case AsidePrev:
		return WorldKind + ".prev"
	case AsidePrev2:
		return WorldKind + ".prev2"
	}
	return ""
}

// String implements fmt.Stringer.
func (a Aside) String() string {
	if a == NoAside {
		return "none"
	}
	return a.Kind()
}

// AsideOf returns the aside place named by kind (NoAside if none).
func AsideOf(kind string) Aside {
	for _, a := range Asides {
		if a.Kind() == kind {
			return a
		}
	}
	return NoAside
}

// RecoveryMaterial reports whether in is a world segment or an aside copy
// of one: what an engine start of its instance may recover from.
func RecoveryMaterial(in Info) bool { return in.Kind == WorldKind || in.Aside != NoAside }

// List describes every fdp.* file in Dir (control sockets "*.sock" and
// temporary files excepted), sorted by name. It maps headers read-only and
// never writes, never blocks and never panics on garbage; a file that cannot
// be read is reported with State corrupt or foreign and Err set.
func List() ([]Info, error) {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil, fmt.Errorf("fdp/shm: list %s: %w", Dir, err)
	}
	var out []Info
	for _, de := range ents {
		name := de.Name()
		if !strings.HasPrefix(name, Prefix) || strings.HasSuffix(name, ".sock") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		out = append(out, describe(name))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	markKept(out)
	return out, nil
}

// markKept sets KeptForRecovery on the aside copies that no world segment of
// their instance has superseded (published a frame at or beyond theirs). The
// world segment may be live (a new engine that has published past the copy
// no longer needs it) or stale (a dead engine that published past it: it is
// the newer recovery material; keeping only the older copy would let an
// engine started after `engine gc` resume from an older frame).
func markKept(infos []Info) {
	live := map[string]uint64{} // instance -> frame of its world segment
	for _, in := range infos {
		if in.Kind == WorldKind && (in.State == StateLive || in.State == StateStale) && in.Frame > 0 {
			live[in.Instance] = in.Frame
		}
	}
	for i := range infos {
		in := &infos[i]
		if in.Aside == NoAside {
			continue
		}
		f, ok := live[in.Instance]
		in.KeptForRecovery = !ok || f < in.Frame
	}
}

// lockHeld reports whether some process holds the exclusive creator lock on
// the regular file at path. It never blocks.
func lockHeld(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	err = unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
	return errors.Is(err, unix.EWOULDBLOCK)
}

func describe(name string) Info {
	in := Info{Name: name, Path: filepath.Join(Dir, name)}
	var nameOK bool
	in.Instance, in.Kind, nameOK = ParseName(name)
	in.Aside = AsideOf(in.Kind)
	var st unix.Stat_t
	if err := unix.Lstat(in.Path, &st); err != nil {
		in.State, in.Err = StateCorrupt, fmt.Errorf("fdp/shm: %s: %w", name, err)
		return in
	}
	in.Size = st.Size
	if st.Uid != uint32(os.Geteuid()) {
		in.State, in.Err = StateForeign, fmt.Errorf("fdp/shm: %s: owned by uid %d, not by us (euid %d)", name, st.Uid, os.Geteuid())
		return in
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		in.State, in.Err = StateCorrupt, fmt.Errorf("fdp/shm: %s: not a regular file (mode %#o)", name, st.Mode)
		return in
	}
	if !nameOK {
		in.State, in.Err = StateCorrupt, fmt.Errorf("fdp/shm: %s: not a valid segment name (want fdp.<instance>.<kind>)", name)
		return in
	}
	in.Locked = lockHeld(in.Path)
	if st.Size < layout.HeaderSize {
		in.State, in.Err = StateCorrupt, fmt.Errorf("fdp/shm: %s: %w: %d bytes, need at least %d", name, layout.ErrTooSmall, st.Size, layout.HeaderSize)
		if in.Locked {
			in.State = StateInitialising
		}
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
	if err == nil && h.Kind == layout.KindWorld && len(s.Data) >= layout.OffWLatest+8 {
		if f, _, ok := layout.UnpackLatest(layout.Load64(s.Data, layout.OffWLatest)); ok {
			in.Frame = f
		}
	}
	// The creator lock proves a live creator even where /proc cannot (another
	// pid namespace); the pid + start time covers creators that closed their
	// mapping but still run.
	alive := in.Locked || (h != nil && ProcessAlive(h.CreatorPID, h.CreatorTime))
	switch {
	case err == nil && alive:
		in.State = StateLive
	case err == nil:
		in.State, in.Err = StateStale, fmt.Errorf("fdp/shm: %s: creator pid %d (start %d) is dead", name, h.CreatorPID, h.CreatorTime)
	case errors.Is(err, layout.ErrNotReady) && alive:
		in.State, in.Err = StateInitialising, err
	case errors.Is(err, layout.ErrNotReady):
		in.State, in.Err = StateStale, fmt.Errorf("fdp/shm: %s: never became ready and creator pid %d is dead: %w", name, h.CreatorPID, err)
	case in.Locked:
		// A creator holding the lock is still writing the header.
		in.State, in.Err = StateInitialising, err
	default:
		in.State, in.Err = StateCorrupt, err
	}
	return in
}

// Removable reports whether GC would remove the segment described by in:
// stale segments, and corrupt ones whose creator cannot be alive (no
// decodable header, or a dead creator), never one whose creator lock is held
// nor an aside copy kept for recovery (Info.KeptForRecovery) that is not
// corrupt.
func Removable(in Info) bool {
	if in.Locked {
		return false
	}
	if in.KeptForRecovery && in.State != StateCorrupt {
		return false
	}
	switch in.State {
	case StateStale:
		return true
	case StateCorrupt:
		return in.Header == nil || !ProcessAlive(in.PID, in.StartTime)
	}
	return false
}

// GC removes the Removable segments of instance ("" = every instance) and
// returns their names. It never removes a live or initialising segment, nor a
// foreign one, nor an aside copy kept for recovery.
func GC(instance string) (removed []string, err error) { return GCKeep(instance, nil) }

// GCKeep is GC except that it also keeps every segment for which keep
// returns true (nil keeps nothing more). `engine up` passes
// RecoveryMaterial: the engine it starts recovers from the stale world
// segment and cleans up the rest itself.
func GCKeep(instance string, keep func(Info) bool) (removed []string, err error) {
	if instance != "" && !layout.ValidInstanceName(instance) {
		return nil, fmt.Errorf("fdp/shm: gc: invalid instance %q", instance)
	}
	infos, err := List()
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		if instance != "" && in.Instance != instance {
			continue
		}
		// Re-probe the lock right before unlinking to narrow the window in
		// which a fallback-path Create (not locked yet) could be removed.
		if !Removable(in) || (keep != nil && keep(in)) || lockHeld(in.Path) {
			continue
		}
		if err := unlinkPath(in.Path); err != nil {
			return removed, err
		}
		removed = append(removed, in.Name)
	}
	if instance != "" {
		removed = append(removed, removeSocketTemps(instance, false)...)
	}
	removed = append(removed, removeDeadLocks(instance)...)
	for _, name := range DeadSockets(instance) {
		if removeDeadSocket(name) {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// SocketSuffix ends the name of an instance's control socket,
// fdp.<instance>.sock.
const SocketSuffix = ".sock"

// DeadSockets returns the names of the control sockets of instance ("" =
// every instance) in Dir that a dead engine left: the instance's world
// segment is gone or stale (not live, not being initialised) and nobody
// listens on the socket (a connect gets ECONNREFUSED; nothing is sent). GC
// removes them.
func DeadSockets(instance string) []string {
	pattern := Prefix + "*" + SocketSuffix
	if instance != "" {
		pattern = Prefix + instance + SocketSuffix
	}
	matches, _ := filepath.Glob(filepath.Join(Dir, pattern))
	var out []string
	for _, path := range matches {
		name := filepath.Base(path)
		if _, ok := deadSocket(name); ok {
			out = append(out, name)
		}
	}
	return out
}

// deadSocket reports whether the socket file name of Dir was left by a dead
// engine (see DeadSockets) and returns its inode.
func deadSocket(name string) (ino uint64, dead bool) {
	inst := strings.TrimSuffix(strings.TrimPrefix(name, Prefix), SocketSuffix)
	if !layout.ValidInstanceName(inst) || !worldDead(inst) {
		return 0, false
	}
	path := filepath.Join(Dir, name)
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return 0, false
	}
	return st.Ino, errors.Is(connectProbe(path), unix.ECONNREFUSED)
}

// worldDead reports whether instance has no world segment, or only a stale
// or corrupt one: no engine of it runs or is starting (an engine creates its
// world segment before its control socket).
func worldDead(instance string) bool {
	name := SegmentName(instance, WorldKind)
	if _, err := os.Lstat(filepath.Join(Dir, name)); errors.Is(err, os.ErrNotExist) {
		return true
	}
	in := describe(name)
	return !in.Locked && (in.State == StateStale || in.State == StateCorrupt)
}

// connectProbe connects to the unix socket at path and closes the
// connection at once; it returns the connect error (ECONNREFUSED: nobody
// listens).
func connectProbe(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINPROGRESS) {
		return nil // a listener with a full backlog: alive
	}
	return err
}

// removeDeadSocket unlinks the dead socket name after checking again, right
// before, that it is dead and still the same file: an engine of the instance
// that starts meanwhile creates its world segment before it renames its new
// socket into place, so the second check sees it.
func removeDeadSocket(name string) bool {
	ino, dead := deadSocket(name)
	if !dead {
		return false
	}
	path := filepath.Join(Dir, name)
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Ino != ino || !worldDead(strings.TrimSuffix(strings.TrimPrefix(name, Prefix), SocketSuffix)) {
		return false
	}
	return os.Remove(path) == nil
}

// removeSocketTemps removes the temporary control sockets of instance
// (".fdp.<instance>.<pid>.tmp": the engine binds its socket under that name
// and renames it into place; an engine killed in between leaves the file):
// those of dead processes, and this process's own when self is set. It
// returns the names removed.
func removeSocketTemps(instance string, self bool) []string {
	matches, _ := filepath.Glob(filepath.Join(Dir, "."+Prefix+instance+".*.tmp"))
	var removed []string
	for _, path := range matches {
		name := filepath.Base(path)
		pid := strings.TrimSuffix(strings.TrimPrefix(name, "."+Prefix+instance+"."), ".tmp")
		n, err := strconv.ParseUint(pid, 10, 31)
		if err != nil {
			continue // not one of ours
		}
		if !(self && int(n) == os.Getpid()) && unix.Kill(int(n), 0) != unix.ESRCH {
			continue // its process (or one that reuses the pid) is alive
		}
		if os.Remove(path) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// LockPath is the instance lock file, ".fdp.<instance>.lock" in Dir: held
// (flock, exclusive) by the process that owns the instance (`engine up`, or
// an `engine run` outside a supervisor; see cli). A dot file: List never
// shows it.
func LockPath(instance string) string { return filepath.Join(Dir, "."+Prefix+instance+".lock") }

// removeDeadLocks removes the instance lock files of instance ("" = every
// instance) that nobody holds (their owner was killed before it could
// remove the file) and returns their names. Safe against a new owner: one
// that opened the file before the unlink finds, after its flock, that the
// path no longer names its file and opens it again.
func removeDeadLocks(instance string) []string {
	pattern := LockPath(instance)
	if instance == "" {
		pattern = filepath.Join(Dir, "."+Prefix+"*.lock")
	}
	matches, _ := filepath.Glob(pattern)
	var removed []string
	for _, path := range matches {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			if os.Remove(path) == nil {
				removed = append(removed, filepath.Base(path))
			}
		}
		unix.Close(fd)
	}
	return removed
}

// Rename renames segment from to the name to in Dir with rename(2), never
// replacing an existing file (RENAME_NOREPLACE; the error then wraps
// os.ErrExist). Mappings of the file stay valid; a creator lock moves with
// the file.
func Rename(from, to string) error {
	if err := checkName(from); err != nil {
		return err
	}
	if err := checkName(to); err != nil {
		return err
	}
	err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(Dir, from), unix.AT_FDCWD, filepath.Join(Dir, to), unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("fdp/shm: rename %s to %s: %w", from, to, os.ErrExist)
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
		// No RENAME_NOREPLACE here: link(2) never replaces either.
		if err := os.Link(filepath.Join(Dir, from), filepath.Join(Dir, to)); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("fdp/shm: rename %s to %s: %w", from, to, os.ErrExist)
			}
			return fmt.Errorf("fdp/shm: rename %s to %s: %w", from, to, err)
		}
		return unlinkPath(filepath.Join(Dir, from))
	}
	return fmt.Errorf("fdp/shm: rename %s to %s: %w", from, to, err)
}

// RemoveInstance removes the files of instance in Dir that a stopped
// engine leaves at a graceful shutdown: its segments whose creator is proven
// dead (no creator lock held, and the creator pid with its start time is not
// running; aside copies included: the stop was asked for), its control
// socket when no engine listens on it, and temporary sockets of dead
// processes. It never removes a file of a live creator (another engine of
// the instance, e.g. one started next to a supervisor): those are returned
// in kept.
func RemoveInstance(instance string) (kept []string, err error) {
	if !layout.ValidInstanceName(instance) {
		return nil, fmt.Errorf("fdp/shm: remove instance: invalid instance %q", instance)
	}
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil, fmt.Errorf("fdp/shm: remove instance %s: %w", instance, err)
	}
	var first error
	for _, de := range ents {
		name := de.Name()
		if !strings.HasPrefix(name, Prefix+instance+".") {
			continue
		}
		if name == Prefix+instance+SocketSuffix {
			if !removeDeadSocket(name) {
				if _, err := os.Lstat(filepath.Join(Dir, name)); err == nil {
					kept = append(kept, name)
				}
			}
			continue
		}
		in := describe(name)
		if in.State == StateForeign || !(creatorDead(in) || createdBySelf(in)) {
			kept = append(kept, name)
			continue
		}
		if err := unlinkPath(in.Path); err != nil && first == nil {
			first = err
		}
	}
	removeSocketTemps(instance, true)
	return kept, first
}

// createdBySelf reports whether this process created the file described by
// in (its header names this pid and this process's start time).
func createdBySelf(in Info) bool {
	return in.Header != nil && in.PID == uint32(os.Getpid()) && in.StartTime == SelfStartTime()
}

// creatorDead reports whether the file described by in was made by a
// process that is proven gone: nobody holds its creator lock (probed again
// now) and its header's creator pid with its start time is not running (a
// file without a readable header and without the lock has no live creator
// either: creators hold the lock until their header is ready).
func creatorDead(in Info) bool {
	if in.Locked || lockHeld(in.Path) {
		return false
	}
	return in.Header == nil || !ProcessAlive(in.PID, in.StartTime)
}
