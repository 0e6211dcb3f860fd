package record

import (
	"io"
	"runtime"
)

// Stream reads, checks and decodes the frame records of a Reader ahead of
// its caller, on a few goroutines, and returns them in order: replay and
// Seek decode the next frames (decompression is most of the cost) while
// the caller applies this one.
type Stream struct {
	order chan chan streamResult
	done  chan struct{}
	next  int
	end   int
}

type streamResult struct {
	f   *Frame
	err error
}

// Stream returns a Stream of the frame records at positions [from, to) of
// the index, decoded by workers goroutines (0: GOMAXPROCS, at most 4) up to
// ahead records in advance (0: 2 × workers). Close it when done.
func (r *Reader) Stream(from, to, workers, ahead int) *Stream {
	if workers <= 0 {
		workers = min(4, runtime.GOMAXPROCS(0))
	}
	if ahead <= 0 {
		ahead = 2 * workers
	}
	from, to = max(0, from), min(to, len(r.index))
	s := &Stream{order: make(chan chan streamResult, ahead), done: make(chan struct{}), next: from, end: to}
	type job struct {
		i  int
		ch chan streamResult
	}
	jobs := make(chan job)
	for w := 0; w < workers; w++ {
		go func() {
			for j := range jobs {
				f, err := r.Frame(j.i)
				j.ch <- streamResult{f, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(s.order)
		for i := from; i < to; i++ {
			ch := make(chan streamResult, 1)
			select {
			case s.order <- ch:
			case <-s.done:
				return
			}
			select {
			case jobs <- job{i, ch}:
			case <-s.done:
				return
			}
		}
	}()
	return s
}

// Next returns the next frame record and its position in the index, or
// io.EOF after the last one. A record that does not read or decode is
// returned as its error; the stream goes on after it.
func (s *Stream) Next() (*Frame, int, error) {
	ch, ok := <-s.order
	if !ok {
		return nil, s.next, io.EOF
	}
	res, ok := <-ch
	if !ok { // the stream was closed under us
		return nil, s.next, io.EOF
	}
	i := s.next
	s.next++
	return res.f, i, res.err
}

// Close stops the stream's goroutines (those decoding a record finish it).
func (s *Stream) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}
