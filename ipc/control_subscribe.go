package ipc

// The hello's subscriptions: the lifecycle events a module observes
// ("lifecycle") and what wakes a slow module besides its period
// ("wake_on"). Both are optional objects; their keys are checked strictly
// (an unknown key is an invalid hello, not ignored), and their values are
// validated here as far as no schema is needed (ctlValidSubscriptions) and
// against the schema by the engine (components beyond it).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fdp-engine/fdp/layout"
)

// LifecycleSub is the hello's "lifecycle" object: which lifecycle events
// (layout/lifecycle.go) the module observes. The engine generates an event
// kind only while some module subscribes to it (or wakes on it), so a
// module that subscribes to nothing costs nothing.
type LifecycleSub struct {
	Created   bool `json:"created,omitempty"`
	Destroyed bool `json:"destroyed,omitempty"`
	// Added and Removed are component masks (word j: components 64j..64j+63,
	// at most layout.MaxMaskWords words): the components whose additions
	// and removals the module observes; empty or all zero: none.
	Added   []uint64 `json:"added,omitempty"`
	Removed []uint64 `json:"removed,omitempty"`
}

// Empty reports whether s subscribes to nothing.
func (s *LifecycleSub) Empty() bool {
	return s == nil || !s.Created && !s.Destroyed && maskWordsZero(s.Added) && maskWordsZero(s.Removed)
}

// UnmarshalJSON decodes strictly: an unknown key is an error.
func (s *LifecycleSub) UnmarshalJSON(b []byte) error {
	type plain LifecycleSub
	return strictJSON(b, (*plain)(s))
}

// WakeOnSub is the hello's "wake_on" object: a slow module runs in the
// frame in which an event of one of Events is published in the log or a
// chunk version of one of Components moves (besides its period, Every;
// every 0: only then), at most once per frame and never while busy (a wake
// while busy runs it at the first frame it is idle).
type WakeOnSub struct {
	// Events are event types (at most layout.MaxWakeEvents, no duplicates):
	// below layout.SystemEventFirst, or lifecycle types (which subscribe
	// the module to them).
	Events []uint16 `json:"events,omitempty"`
	// Components is a component mask (as LifecycleSub.Added).
	Components []uint64 `json:"components,omitempty"`
}

// Empty reports whether w names nothing.
func (w *WakeOnSub) Empty() bool {
	return w == nil || len(w.Events) == 0 && maskWordsZero(w.Components)
}

// UnmarshalJSON decodes strictly: an unknown key is an error.
func (w *WakeOnSub) UnmarshalJSON(b []byte) error {
	type plain WakeOnSub
	return strictJSON(b, (*plain)(w))
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func maskWordsZero(ws []uint64) bool {
	for _, w := range ws {
		if w != 0 {
			return false
		}
	}
	return true
}

// MaskWords returns the mask of words ws (layout.MaxMaskWords words); ok is
// false when there are more words than fit.
func MaskWords(ws []uint64) (m [layout.MaxMaskWords]uint64, ok bool) {
	if len(ws) > layout.MaxMaskWords {
		return m, false
	}
	copy(m[:], ws)
	return m, true
}

// PutMaskWords returns m as words up to its highest non-zero one (nil for an
// empty mask): the form of the hello's mask fields.
func PutMaskWords(m [layout.MaxMaskWords]uint64) []uint64 {
	for j := layout.MaxMaskWords - 1; j >= 0; j-- {
		if m[j] != 0 {
			return slices.Clone(m[:j+1])
		}
	}
	return nil
}

// ctlValidSubscriptions checks what of the hello's lifecycle and wake_on
// objects needs no schema; bad formats the refusal.
func ctlValidSubscriptions(h *Hello, bad func(format string, a ...any) error) error {
	if l := h.Lifecycle; l != nil {
		if len(l.Added) > layout.MaxMaskWords || len(l.Removed) > layout.MaxMaskWords {
			return bad("lifecycle: added and removed have at most %d mask words (components up to %d)", layout.MaxMaskWords, layout.MaxComponents)
		}
	}
	w := h.WakeOn
	if w == nil {
		return nil
	}
	switch {
	case h.Tier != TierSlow:
		return bad("wake_on is for slow modules, the tier is %q", h.Tier)
	case w.Empty():
		return bad("wake_on names no event type and no component")
	case len(w.Events) > layout.MaxWakeEvents:
		return bad("wake_on names %d event types (max %d)", len(w.Events), layout.MaxWakeEvents)
	case len(w.Components) > layout.MaxMaskWords:
		return bad("wake_on: components has %d mask words (max %d)", len(w.Components), layout.MaxMaskWords)
	}
	for i, t := range w.Events {
		if !layout.ValidWakeEvent(t) {
			return bad("wake_on: event type %#04x is reserved for the engine (only the lifecycle types %#04x..%#04x may be woken on)",
				t, uint16(layout.EventCreated), uint16(layout.EventRemoved))
		}
		if slices.Contains(w.Events[:i], t) {
			return bad("wake_on: event type %d named twice", t)
		}
	}
	return nil
}

// ValidHello checks h as the control plane does before its handler sees
// it (everything but the peer, protocol version and schema): for hosts that
// admit modules in process, and tests.
func ValidHello(h *Hello) error { return ctlValidHello(h) }

// ValidSubscriptions checks h's lifecycle and wake_on (with its tier) as
// ValidHello does: for a module that refuses its own before it dials.
func ValidSubscriptions(h *Hello) error {
	return ctlValidSubscriptions(h, func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadHello, fmt.Sprintf(format, a...))
	})
}
