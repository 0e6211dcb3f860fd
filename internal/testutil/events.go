package testutil

import (
	"fmt"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/shm"
)

// EventFollower reads an instance's event log from outside the engine, as
// a test's own witness of what the engine published: it opens the events
// segment by name (read-only) and follows it from its oldest event.
type EventFollower struct {
	seg *shm.Segment
	r   *ipc.EventReader
	cur ipc.EventCursor
}

// FollowEvents opens the event log of instance.
func FollowEvents(instance string) (*EventFollower, error) {
	seg, err := shm.Open(shm.SegmentName(instance, "events"), false)
	if err != nil {
		return nil, err
	}
	r, err := ipc.NewEventReader(seg.Data)
	if err != nil {
		seg.Close()
		return nil, err
	}
	return &EventFollower{seg: seg, r: r, cur: r.Oldest()}, nil
}

// Read delivers every event committed since the previous Read, in order.
// The payload is valid only during fn. Events lost because the follower
// fell more than the log's capacity behind are an error: a test that needs
// every event must read often enough.
func (f *EventFollower) Read(fn func(seq, frame uint64, typ uint16, payload []byte)) error {
	overrun, err := f.r.Read(&f.cur, fn)
	if err != nil {
		return err
	}
	if overrun > 0 {
		return fmt.Errorf("event follower lost %d events (the log wrapped between two reads)", overrun)
	}
	return nil
}

// Close unmaps the event log.
func (f *EventFollower) Close() error { return f.seg.Close() }
