package tests

// Prometheus metrics seen from outside (issue 14): the shipped `engine up
// --metrics` with real module processes, scraped over HTTP while modules
// run, one of them and then the engine SIGKILLed once.

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// privateShm gives the test (and the processes it starts, through
// $FDP_SHM_DIR) a segment directory of its own.
func privateShm(t *testing.T) string {
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	t.Setenv("FDP_SHM_DIR", dir)
	return dir
}

// logProc is a running binary whose stderr lines are kept.
type logProc struct {
	cmd   *exec.Cmd
	mu    gosync.Mutex
	lines []string
	done  chan struct{}
}

func startLogged(t *testing.T, bin string, args ...string) *logProc {
	t.Helper()
	p := &logProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	errp, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(errp)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// find returns the last submatch of re in the lines so far ("" if none).
func (p *logProc) find(re *regexp.Regexp) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.lines) - 1; i >= 0; i-- {
		if m := re.FindStringSubmatch(p.lines[i]); m != nil {
			return m[1]
		}
	}
	return ""
}

func (p *logProc) wait(t *testing.T, what string, re *regexp.Regexp) string {
	t.Helper()
	var v string
	waitFor(t, what, 20*time.Second, func() bool { v = p.find(re); return v != "" })
	return v
}

// childPIDRe matches the supervisor's "child started" line of child name.
func childPIDRe(name string) *regexp.Regexp {
	return regexp.MustCompile(`msg="child started" child=` + regexp.QuoteMeta(name) + ` pid=(\d+)`)
}

// scrape parses the text exposition at url; nil when it cannot be had.
func scrape(url string) map[string]*dto.MetricFamily {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return fams
}

// mval returns the value of a counter or gauge of family name whose labels
// are exactly labels (pairs); NaN when there is none.
func mval(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return math.NaN()
}

func hcount(fams map[string]*dto.MetricFamily, name string) float64 {
	ms := fams[name].GetMetric()
	if len(ms) != 1 {
		return math.NaN()
	}
	return float64(ms[0].GetHistogram().GetSampleCount())
}

// documentedMetrics parses docs/METRICS.md's table of every metric: name ->
// type and sorted label names.
func documentedMetrics(t *testing.T) map[string][2]string {
	b, err := os.ReadFile(filepath.Join("..", "docs", "METRICS.md"))
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `(fdp_[a-z_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")
	out := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		out[m[1]] = [2]string{m[2], strings.Join(labels, ",")}
	}
	require.Greater(t, len(out), 40)
	return out
}

// TestMetricsUpBlackBox: `engine up --metrics 127.0.0.1:0` (the shipped
// binaries, three module processes) logs its address; a scrape while the
// modules run has every metric docs/METRICS.md lists, with its type and
// labels. One module SIGKILLed once: its supervisor deaths counter becomes
// exactly 1 (the others' stay 0), its restarts at least 1, one detection
// latency counted, and the engine's view agrees (module deaths 1, joins 2).
// Frames published grow between scrapes, and each engine histogram's count
// equals its frames in the same scrape. The engine SIGKILLed once: the
// endpoint goes on, and serves the new engine's figures (its counters
// from zero, frame numbers after the recovered one, the recovered frame
// published untimed); the module's supervisor deaths stay 1. At exit the
// engine's private socket directory is gone.
func TestMetricsUpBlackBox(t *testing.T) {
	bin := shippedBinaries(t)
	privateShm(t)
	inst := uniqueInstance(t, "mx")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "20000", --churn, "200", --rate, "100", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-2, command: [modrunner, ai], tier: slow, every: 6, group: ai}
restart: {initial_backoff: 10ms, max_backoff: 200ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 20, window: 30s}
hang: {heartbeat_timeout: 2s, engine_timeout: 2s, engine_start_timeout: 10s}
shutdown: {grace: 2s}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startLogged(t, filepath.Join(bin, "engine"), "up", "--config", path, "--metrics", "127.0.0.1:0")
	addr := up.wait(t, "the metrics address", regexp.MustCompile(`msg="metrics listening" addr=(127\.0\.0\.1:\d+)`))
	url := "http://" + addr + "/metrics"
	modules := []string{"telemetry", "ai-1", "ai-2"}

	var s1 map[string]*dto.MetricFamily
	waitFor(t, "the engine's figures with every module ticking", 20*time.Second, func() bool {
		s1 = scrape(url)
		if mval(s1, "fdp_supervisor_engine_metrics_up") != 1 {
			return false
		}
		for _, m := range modules {
			if !(mval(s1, "fdp_module_runs_total", "module", m) > 0) {
				return false
			}
		}
		return true
	})
	// Names, types and labels: every documented metric is there.
	doc := documentedMetrics(t)
	for name, want := range doc {
		f := s1[name]
		require.NotNil(t, f, "%s is documented but not exported", name)
		require.Equal(t, strings.ToUpper(want[0]), f.GetType().String(), name)
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			slices.Sort(labels)
			require.Equal(t, want[1], strings.Join(labels, ","), "%s: labels", name)
		}
	}
	for name := range s1 {
		if strings.HasPrefix(name, "fdp_") {
			require.Contains(t, doc, name, "exported but not documented")
		}
	}
	require.NotNil(t, s1["process_resident_memory_bytes"], "the supervisor's process families")

	// One module SIGKILLed once.
	pid, err := strconv.Atoi(up.find(childPIDRe("ai-1")))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	var s2 map[string]*dto.MetricFamily
	waitFor(t, "ai-1's death counted and the module back", 20*time.Second, func() bool {
		s2 = scrape(url)
		return mval(s2, "fdp_supervisor_deaths_total", "child", "ai-1") == 1 &&
			mval(s2, "fdp_supervisor_restarts_total", "child", "ai-1") >= 1 &&
			mval(s2, "fdp_module_joins_total", "module", "ai-1") == 2
	})
	require.Equal(t, 1.0, mval(s2, "fdp_module_deaths_total", "module", "ai-1"), "the engine saw the death too")
	for _, c := range []string{"engine", "telemetry", "ai-2"} {
		require.Zero(t, mval(s2, "fdp_supervisor_deaths_total", "child", c), c)
		require.Zero(t, mval(s2, "fdp_supervisor_restarts_total", "child", c), c)
	}
	for _, m := range s2["fdp_supervisor_detection_latency_seconds"].GetMetric() {
		want := uint64(0)
		if m.GetLabel()[0].GetValue() == "ai-1" {
			want = 1
		}
		require.Equal(t, want, m.GetHistogram().GetSampleCount(), "detection latencies of %s", m.GetLabel()[0].GetValue())
	}
	require.Greater(t, mval(s2, "fdp_engine_frames_published_total"), mval(s1, "fdp_engine_frames_published_total"))
	require.Equal(t, mval(s2, "fdp_engine_frames_total"), hcount(s2, "fdp_engine_frame_duration_seconds"))
	require.Equal(t, mval(s2, "fdp_engine_frames_published_total"), hcount(s2, "fdp_engine_publish_duration_seconds"))

	// The engine SIGKILLed once: the endpoint serves the next engine's.
	frame := mval(s2, "fdp_engine_frame")
	frames := mval(s2, "fdp_engine_frames_total")
	epid, err := strconv.Atoi(up.find(childPIDRe("engine")))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(epid, syscall.SIGKILL))
	var s3 map[string]*dto.MetricFamily
	waitFor(t, "the next engine's figures", 20*time.Second, func() bool {
		s3 = scrape(url)
		return mval(s3, "fdp_supervisor_deaths_total", "child", "engine") == 1 &&
			mval(s3, "fdp_supervisor_engine_metrics_up") == 1 && mval(s3, "fdp_engine_frames_total") < frames
	})
	require.Greater(t, mval(s3, "fdp_engine_frame"), frame, "frame numbers go on after the recovered one")
	require.Equal(t, mval(s3, "fdp_engine_frames_total"), hcount(s3, "fdp_engine_frame_duration_seconds"))
	require.Equal(t, mval(s3, "fdp_engine_frames_published_total")-1, hcount(s3, "fdp_engine_publish_duration_seconds"),
		"the recovered frame is published at start, untimed")
	require.Equal(t, 1.0, mval(s3, "fdp_supervisor_deaths_total", "child", "ai-1"))

	sock := up.find(regexp.MustCompile(`msg="metrics listening" child=engine.* addr=(/\S+)`))
	require.NotEmpty(t, sock, "the engine's endpoint, on the supervisor's socket")
	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
	_, err = os.Stat(filepath.Dir(sock))
	require.ErrorIs(t, err, os.ErrNotExist, "the private directory is removed at exit")
}

// TestMetricsAddrErrors: a bad or busy metrics address is a one-line error
// of `engine run` and `engine up`, before anything starts.
func TestMetricsAddrErrors(t *testing.T) {
	bin := shippedBinaries(t)
	privateShm(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	inst := uniqueInstance(t, "mxe")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--instance", inst, "--entities", "100", "--metrics", "localhost"}, "want host:port"},
		{[]string{"run", "--instance", inst, "--entities", "100", "--metrics", busy.Addr().String()}, "address already in use"},
		{[]string{"up", "--instance", inst, "--metrics", busy.Addr().String()}, "address already in use"},
	} {
		out, err := exec.Command(filepath.Join(bin, "engine"), tc.args...).CombinedOutput()
		require.Error(t, err, "%v: %s", tc.args, out)
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.Contains(l, "level=") { // slog lines of the run before the error
				lines = append(lines, l)
			}
		}
		require.Len(t, lines, 1, "%v: %s", tc.args, out)
		require.Contains(t, lines[0], tc.want)
		requireNoSegments(t, inst)
	}
}
