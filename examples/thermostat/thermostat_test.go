package thermostat_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/examples/thermostat"
	"github.com/fdp-engine/fdp/internal/testutil"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// room is one room as a published frame holds it.
type room struct {
	temp, set float32
	heater    thermostat.Heater
}

// rooms pins the latest frame of the instance and reads every room: the
// example world seen as a module sees it, through the documented reader.
func rooms(t *testing.T, inst string, s *thermostat.Schema) (uint64, map[world.Entity]room) {
	t.Helper()
	frame, out, err := readRooms(inst, s)
	require.NoError(t, err)
	return frame, out
}

// readRooms is rooms with its error: a new engine's world can be listed
// before its first publish ("nothing published yet").
func readRooms(inst string, s *thermostat.Schema) (uint64, map[world.Entity]room, error) {
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "check", Registry: s.Reg})
	if err != nil {
		return 0, nil, err
	}
	defer r.Close()
	f, err := r.Pin()
	if err != nil {
		return 0, nil, err
	}
	defer f.Release()
	out := map[world.Entity]room{}
	q := f.Query(world.MaskOf(s.Temp, s.Setpoint, s.Heater))
	for q.Next() {
		temp := fsync.Column[thermostat.Temperature](f, q.Chunk(), s.Temp)
		set := fsync.Column[thermostat.Setpoint](f, q.Chunk(), s.Setpoint)
		heat := fsync.Column[thermostat.Heater](f, q.Chunk(), s.Heater)
		for i := range q.Rows() {
			if q.Match(i) {
				out[q.Entity(i)] = room{temp: temp[i].C, set: set[i].C, heater: heat[i]}
			}
		}
	}
	if !f.Valid() {
		return 0, nil, fmt.Errorf("frame rewritten while read")
	}
	return f.Number(), out, nil
}

// lsWorld is the instance's world segment in `thermostat ls --json`.
type lsWorld struct {
	Instance string `json:"instance"`
	Kind     string `json:"kind"`
	PID      uint32 `json:"owner_pid"`
	State    string `json:"state"`
}

// tool runs the example's engine program with args (an inspection command)
// and returns its stdout; it must succeed.
func tool(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "thermostat"), args...).Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "thermostat %v: %s", args, stderr)
	return out
}

// engine returns the pid of the live engine of the instance (0: none), as
// `thermostat ls --json` lists it.
func engine(t *testing.T, bin, inst string) uint32 {
	var es []lsWorld
	require.NoError(t, json.Unmarshal(tool(t, bin, "ls", "--json"), &es))
	for _, e := range es {
		if e.Instance == inst && e.Kind == "world" && e.State == "live" {
			return e.PID
		}
	}
	return 0
}

// eventually polls cond every 20 ms until it holds, failing after limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "timed out waiting: %s", what)
	}
}

// TestThermostatUnderUp builds the example's two programs, runs them under
// the example's own `thermostat up` with thermostat.yaml, and checks, with
// real processes: the module's command reaches the world (every room's
// setpoint is the module's $SETPOINT, which the simulation never writes,
// and the heaters follow it); after a SIGKILL of the engine the supervisor
// starts a new one that recovers the world (same rooms, the heaters' energy
// goes on from where it was instead of from 0, frame numbers go on); and
// ls, dump and stat work on the instance.
func TestThermostatUnderUp(t *testing.T) {
	bin := testutil.GoBuild(t, "github.com/fdp-engine/fdp/examples/thermostat/cmd/...")
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	t.Setenv("FDP_SHM_DIR", dir)
	s, err := thermostat.NewSchema()
	require.NoError(t, err)
	inst := fmt.Sprintf("th%d", os.Getpid())
	const want = 21.5 // thermostat.yaml's SETPOINT

	var out testutil.SyncBuffer
	up := exec.Command(filepath.Join(bin, "thermostat"), "up", "--config", "thermostat.yaml", "--instance", inst)
	up.Stdout, up.Stderr = &out, &out
	require.NoError(t, up.Start())
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() {
		if up.ProcessState == nil {
			_ = up.Process.Kill()
			<-exited
		}
	})

	// The module's effect: every room at its setpoint, and heaters on for
	// the rooms below it (all of them start at 12..16 °C).
	var pid uint32
	eventually(t, 15*time.Second, "the engine publishing", func() bool { pid = engine(t, bin, inst); return pid != 0 })
	eventually(t, 10*time.Second, "the module's setpoints in the world", func() bool {
		_, rs := rooms(t, inst, s)
		for _, r := range rs {
			if r.set != want {
				return false
			}
		}
		return len(rs) == 8
	})
	// Energy used before the kill: at least 8 rooms × 2 kW × 1 s.
	var before map[world.Entity]room
	var frame uint64
	eventually(t, 10*time.Second, "the heaters running for a second", func() bool {
		frame, before = rooms(t, inst, s)
		sum := 0.0
		for _, r := range before {
			sum += r.heater.KJ
		}
		return sum >= 8*thermostat.HeaterPower
	})
	require.Equal(t, pid, engine(t, bin, inst), "the same engine all along")

	require.NoError(t, syscall.Kill(int(pid), syscall.SIGKILL))
	var next uint32
	eventually(t, 15*time.Second, "a new engine publishing", func() bool {
		next = engine(t, bin, inst)
		return next != 0 && next != pid
	})
	var after uint64
	var got map[world.Entity]room
	eventually(t, 10*time.Second, "the new engine's first frame", func() bool {
		var err error
		after, got, err = readRooms(inst, s)
		return err == nil
	})
	require.Greater(t, after, frame, "frame numbers go on after the dead engine's")
	require.Len(t, got, len(before), "the same rooms")
	for e, b := range before {
		g, ok := got[e]
		require.True(t, ok, "room %v is not in the recovered world", e)
		require.GreaterOrEqual(t, g.heater.KJ, b.heater.KJ, "room %v: the energy goes on from the dead engine's frame, not from 0", e)
		require.Equal(t, float32(want), g.set, "room %v: the setpoint is recovered", e)
	}

	// The inspection commands on the instance.
	var rep struct {
		Header struct {
			Kind       string `json:"kind"`
			CreatorPID uint32 `json:"creator_pid"`
		} `json:"header"`
		World struct {
			Components []struct {
				Name string `json:"name"`
			} `json:"components"`
		} `json:"world"`
	}
	require.NoError(t, json.Unmarshal(tool(t, bin, "dump", "--json", inst, "world"), &rep))
	require.Equal(t, "world", rep.Header.Kind)
	require.Equal(t, next, rep.Header.CreatorPID)
	var names []string
	for _, c := range rep.World.Components {
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"Temperature", "Setpoint", "Heater"}, names)

	var st struct {
		Frame   uint64 `json:"frame"`
		Modules []struct {
			Name  string `json:"name"`
			Stats *struct {
				Runs uint64 `json:"runs"`
			} `json:"stats"`
		} `json:"modules"`
	}
	lines := strings.Split(strings.TrimSpace(string(tool(t, bin, "stat", "--json", "--count", "2", "--interval", "200ms", inst))), "\n")
	require.Len(t, lines, 2)
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &st))
	require.Greater(t, st.Frame, after)
	require.Len(t, st.Modules, 1)
	require.Equal(t, "setpoint", st.Modules[0].Name)
	eventually(t, 10*time.Second, "the module rejoining the new engine", func() bool {
		var v struct {
			Modules []struct {
				Stats *struct {
					Runs uint64 `json:"runs"`
				} `json:"stats"`
			} `json:"modules"`
		}
		line := tool(t, bin, "stat", "--json", "--count", "1", inst)
		return json.Unmarshal(line, &v) == nil && len(v.Modules) == 1 && v.Modules[0].Stats != nil && v.Modules[0].Stats.Runs > 0
	})

	// SIGTERM: up stops both, prints the summaries and removes the instance.
	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, out.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("up did not stop:\n%s", out.String())
	}
	log := out.String()
	require.Contains(t, log, "thermostat: 8 rooms, heaters used ")
	require.Regexp(t, `(?m)^engine +stopped +1 +1 `, log, "one restart after one death")
	left, err := filepath.Glob(filepath.Join(dir, "fdp."+inst+".*"))
	require.NoError(t, err)
	require.Empty(t, left)
}
