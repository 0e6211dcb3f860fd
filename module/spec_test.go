package module

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/world"
)

// specOnly is a module that only has a spec: Run must refuse it before
// any tick.
type specOnly struct{ spec Spec }

func (m specOnly) Spec() Spec { return m.spec }

func (m specOnly) Tick(*View, *Commands, time.Duration) error {
	return errors.New("no tick expected")
}

// TestRunRefusesInvalidSpec: a negative Spec.Every (joined as every 1
// before), an unknown tier, or a negative Options.Every is refused by Run
// at once, before it looks for an engine, as the engine refuses such a
// hello: ErrInvalidSpec wrapping ipc.ErrBadHello, a permanent refusal
// (Refused: MainOptions exits 78). A zero Every is the default (1), not a
// refusal: Run goes on to look for the engine (none here).
func TestRunRefusesInvalidSpec(t *testing.T) {
	reg := world.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opt := func(o Options) Options {
		o.Instance = fmt.Sprintf("nosuch%d", time.Now().UnixNano()%1e9)
		o.Registry, o.Logger = reg, log
		o.AttachTimeout, o.RejoinTimeout = 300*time.Millisecond, -1
		return o
	}
	for _, c := range []struct {
		name string
		spec Spec
		opt  Options
	}{
		{"every -5", Spec{Name: "m", Tier: Slow, Every: -5}, Options{}},
		{"every beyond MaxEvery", Spec{Name: "m", Tier: Fast, Every: ipc.MaxEvery + 1}, Options{}},
		{"tier", Spec{Name: "m", Tier: "medium", Every: 1}, Options{}},
		{"no tier", Spec{Name: "m", Every: 1}, Options{}},
		{"Options.Every -3", Spec{Name: "m", Tier: Fast, Every: 1}, Options{Every: -3}},
		{"Options.Tier", Spec{Name: "m", Tier: Fast, Every: 1}, Options{Tier: "bogus"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := Run(context.Background(), specOnly{c.spec}, opt(c.opt))
			if !errors.Is(err, ErrInvalidSpec) || !errors.Is(err, ipc.ErrBadHello) || !Refused(err) {
				t.Fatalf("Run: %v, want ErrInvalidSpec wrapping ipc.ErrBadHello", err)
			}
			if d := time.Since(start); d >= 300*time.Millisecond {
				t.Fatalf("refused after %v: it waited for an engine", d)
			}
		})
	}
	t.Run("every 0 is 1", func(t *testing.T) {
		err := Run(context.Background(), specOnly{Spec{Name: "m", Tier: Fast}}, opt(Options{}))
		if err == nil || errors.Is(err, ErrInvalidSpec) || Refused(err) {
			t.Fatalf("Run: %v, want the wait for a missing engine to fail", err)
		}
	})
}

// TestEnvTierEvery: $FDP_TIER and $FDP_EVERY fill Options.Tier and Every
// when set (and Options' are not); an invalid value is ErrInvalidSpec.
func TestEnvTierEvery(t *testing.T) {
	for _, c := range []struct {
		tier, every string
		in          Options
		want        Options
		bad         bool
	}{
		{"", "", Options{}, Options{}, false},
		{"slow", "5", Options{}, Options{Tier: Slow, Every: 5}, false},
		{"fast", "3", Options{Tier: Slow, Every: 7}, Options{Tier: Slow, Every: 7}, false},
		{"bogus", "", Options{}, Options{}, true},
		{"", "-3", Options{}, Options{}, true},
		{"", "0", Options{}, Options{}, true},
		{"", "junk", Options{}, Options{}, true},
		{"", fmt.Sprint(ipc.MaxEvery + 1), Options{}, Options{}, true},
	} {
		t.Setenv("FDP_TIER", c.tier)
		t.Setenv("FDP_EVERY", c.every)
		o := c.in
		err := envTierEvery(&o)
		if c.bad {
			if !errors.Is(err, ErrInvalidSpec) || !Refused(err) {
				t.Errorf("FDP_TIER=%q FDP_EVERY=%q: %v, want ErrInvalidSpec", c.tier, c.every, err)
			}
			continue
		}
		if err != nil || o.Tier != c.want.Tier || o.Every != c.want.Every {
			t.Errorf("FDP_TIER=%q FDP_EVERY=%q: %+v %v, want tier %q every %d", c.tier, c.every, o, err, c.want.Tier, c.want.Every)
		}
	}
}
