package host

// A recording file (package record) as a replay's Recording.

import (
	"fmt"
	"io"
	"runtime"
	gosync "sync"

	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/world"
)

// RecordingFile reads a recording (`engine run --record`) for RunReplay:
// its frame records are applied in order to a frame image (record.Image),
// and each is given as the changes it made (a keyframe, and the first frame
// after a seek, whole). Column and record bytes come from the image, so a
// variable-size column is given with its whole arena.
type RecordingFile struct {
	r  *record.Reader
	im *record.Image
	// next is the index position of the next frame record to read; full:
	// the next frame is given whole; seeked: the image already holds
	// record next-1, which Next gives (whole) without reading it again.
	next   int
	full   bool
	seeked bool
	chunk  []int // chunk -> its entry in the frame being built, -1 none
	pf     *prefetch
}

// prefetch reads and decodes the frame records after a position on other
// goroutines (decompression is most of a replay's cost): worker k of n
// decodes records from+k, from+k+n, ... into its own channel, so the
// consumer takes them in order. Applying them to the image stays on the
// caller's goroutine, in order.
type prefetch struct {
	from  int
	outs  []chan decoded
	stop  chan struct{}
	wg    gosync.WaitGroup
	taken int
}

type decoded struct {
	f   *record.Frame
	err error
}

func startPrefetch(r *record.Reader, from int) *prefetch {
	n := min(max(runtime.GOMAXPROCS(0), 1), 2)
	p := &prefetch{from: from, outs: make([]chan decoded, n), stop: make(chan struct{})}
	end := len(r.Index())
	for k := range p.outs {
		p.outs[k] = make(chan decoded, 4)
		p.wg.Add(1)
		go func(out chan decoded, k int) {
			defer p.wg.Done()
			defer close(out)
			for i := from + k; i < end; i += n {
				f, err := r.Frame(i)
				select {
				case out <- decoded{f, err}:
				case <-p.stop:
					return
				}
				if err != nil {
					return
				}
			}
		}(p.outs[k], k)
	}
	return p
}

// next returns the next record in order (index from+taken).
func (p *prefetch) next() (*record.Frame, error) {
	d, ok := <-p.outs[p.taken%len(p.outs)]
	p.taken++
	if !ok {
		return nil, io.ErrUnexpectedEOF // a worker ended after an error it gave
	}
	return d.f, d.err
}

func (p *prefetch) close() {
	close(p.stop)
	for _, out := range p.outs {
		for range out { // let a blocked worker see stop
		}
	}
	p.wg.Wait()
}

// OpenRecording opens a recording file. A recording cut short (a SIGKILL)
// or damaged is readable up to its damage (record.Reader.Damage).
func OpenRecording(path string) (*RecordingFile, error) {
	r, err := record.Open(path)
	if err != nil {
		return nil, err
	}
	if len(r.Index()) == 0 {
		r.Close()
		if d := r.Damage(); d != nil {
			return nil, fmt.Errorf("%s: no frame to replay: %w", path, d)
		}
		return nil, fmt.Errorf("%s: no frame to replay", path)
	}
	return &RecordingFile{r: r, im: record.NewImage(r.Header()), full: true}, nil
}

// Reader returns the recording's reader (header, index, damage).
func (f *RecordingFile) Reader() *record.Reader { return f.r }

// Close stops the decoding ahead and closes the file.
func (f *RecordingFile) Close() error {
	if f.pf != nil {
		f.pf.close()
		f.pf = nil
	}
	return f.r.Close()
}

// Frames returns the first and last frame of the recording.
func (f *RecordingFile) Frames() (first, last uint64) {
	ix := f.r.Index()
	return ix[0].Frame, ix[len(ix)-1].Frame
}

// NewWorld returns an empty world of reg with the recording's size; reg
// must be the recording's schema.
func (f *RecordingFile) NewWorld(reg *world.Registry) (*world.World, error) {
	g := f.r.Header().Geometry
	if got, want := reg.SchemaHash(), f.r.Header().SchemaHash(); got != want {
		return nil, fmt.Errorf("the recording's schema (hash %#x) is not this program's (%#x)", want, got)
	}
	return world.New(reg, world.Config{ChunkCapacity: g.ChunkCapacity, MaxChunks: g.MaxChunks})
}

// Seek positions the recording at the last frame record at or before frame
// (the frame itself unless the recorder dropped it), from the nearest
// keyframe before it; Next gives it whole.
func (f *RecordingFile) Seek(frame uint64) error {
	i, ok := f.r.Find(frame)
	if !ok {
		first, _ := f.Frames()
		return fmt.Errorf("frame %d is before the recording's first frame %d", frame, first)
	}
	if f.pf != nil {
		f.pf.close()
		f.pf = nil
	}
	if _, err := f.r.Seek(f.im, i); err != nil {
		return err
	}
	f.next, f.full, f.seeked = i+1, true, true
	return nil
}

// Next reads the next frame record (io.EOF after the last).
func (f *RecordingFile) Next() (*ReplayFrame, error) {
	var fr *record.Frame
	var err error
	if f.seeked {
		fr, err = f.r.Frame(f.next - 1) // for its events: the image holds it
		f.seeked = false
	} else {
		if f.next >= len(f.r.Index()) {
			return nil, io.EOF
		}
		if f.pf == nil {
			f.pf = startPrefetch(f.r, f.next)
		}
		if fr, err = f.pf.next(); err == nil {
			err = f.im.Apply(fr)
		}
		f.next++
	}
	if err != nil {
		return nil, err
	}
	full := f.full || fr.Kind == record.KindKeyframe
	f.full = false
	rf := &ReplayFrame{Frame: fr.Frame, Full: full, ChunksInUse: int(f.im.Chunks)}
	g := f.r.Header().Geometry
	if cap(f.chunk) < rf.ChunksInUse {
		f.chunk = make([]int, rf.ChunksInUse)
	}
	f.chunk = f.chunk[:rf.ChunksInUse]
	for c := range f.chunk {
		f.chunk[c] = -1
	}
	entry := func(c int) *ReplayChunk {
		if f.chunk[c] < 0 {
			f.chunk[c] = len(rf.Chunks)
			rf.Chunks = append(rf.Chunks, ReplayChunk{Index: c})
		}
		return &rf.Chunks[f.chunk[c]]
	}
	if full {
		for c := 0; c < rf.ChunksInUse; c++ {
			ch := entry(c)
			ch.Records = f.im.RecordBytes(c)
			for k := range g.Components {
				if col, _ := f.im.Column(c, k); col != nil {
					ch.Columns = append(ch.Columns, ReplayColumn{ID: world.ComponentID(k), Data: col})
				}
			}
		}
		for i := range g.Singletons {
			rf.Singletons = append(rf.Singletons, f.singleton(i))
		}
	} else {
		for _, cr := range fr.ChunkRecs {
			if int(cr.Chunk) < rf.ChunksInUse {
				entry(int(cr.Chunk)).Records = f.im.RecordBytes(int(cr.Chunk))
			}
		}
		for _, col := range fr.Columns {
			if int(col.Chunk) >= rf.ChunksInUse {
				continue
			}
			if data, _ := f.im.Column(int(col.Chunk), int(col.Component)); data != nil {
				ch := entry(int(col.Chunk))
				ch.Columns = append(ch.Columns, ReplayColumn{ID: world.ComponentID(col.Component), Data: data})
			}
		}
		for _, s := range fr.Singletons {
			rf.Singletons = append(rf.Singletons, f.singleton(int(s.ID)))
		}
	}
	for _, ev := range fr.Events {
		rf.Events = append(rf.Events, ReplayEvent{Frame: ev.Frame, Type: ev.Type, Payload: ev.Payload})
	}
	return rf, nil
}

// singleton is singleton i of the image (Data nil: never set).
func (f *RecordingFile) singleton(i int) ReplaySingleton {
	v, ver := f.im.Singleton(i)
	s := ReplaySingleton{ID: world.SingletonID(i)}
	if ver != 0 {
		s.Data = v
	}
	return s
}
