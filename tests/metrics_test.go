package tests

// Prometheus metrics seen from outside (issue 14): the shipped `engine up
// --metrics` with real module processes, scraped over HTTP while modules
// run, one of them and then the engine SIGKILLed once.

import (
	"bufio"
	"context"
	"fmt"
	"io"
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
	// An external death has no detection latency (its instant is not
	// observable): only the supervisor's own hang kills have one.
	for _, m := range s2["fdp_supervisor_detection_latency_seconds"].GetMetric() {
		require.Zero(t, m.GetHistogram().GetSampleCount(), "detection latencies of %s", m.GetLabel()[0].GetValue())
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
	werr := up.cmd.Wait()
	<-up.done
	require.NoError(t, werr, "%s", strings.Join(up.lines, "\n"))
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

// TestUpIgnoresExportedMetrics: an FDP_METRICS exported in up's environment
// (the user's address for `engine run`, here a busy one) is not given to
// the children: the engine runs, a module attaches, nothing dies. Before,
// every engine child inherited it and exited "address already in use".
func TestUpIgnoresExportedMetrics(t *testing.T) {
	bin := shippedBinaries(t)
	privateShm(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	t.Setenv("FDP_METRICS", busy.Addr().String())
	inst := uniqueInstance(t, "mxenv")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startLogged(t, filepath.Join(bin, "engine"), "up", "--config", path)
	up.wait(t, "the module started", childPIDRe("telemetry"))
	// The module attached and ran (its segment's heartbeat), then a while
	// longer than an engine needs to fail on its metrics address.
	waitFor(t, "the module's first ticks", 20*time.Second, func() bool {
		out, _ := exec.Command(filepath.Join(bin, "engine"), "stat", "--count", "1", inst).CombinedOutput()
		return regexp.MustCompile(`(?m)stats \d+ telemetry: running\s+runs [1-9]`).Match(out)
	})
	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
	<-up.done
	up.mu.Lock()
	defer up.mu.Unlock()
	all := strings.Join(up.lines, "\n")
	require.NotContains(t, all, "child died", all)
	require.NotContains(t, all, "address already in use", all)
}

// TestMetricsUpHungEngine: with the engine SIGSTOPped, a scrape of up's
// endpoint still answers within its budget (1 s by default; the scraper's
// X-Prometheus-Scrape-Timeout-Seconds less a tenth) with the supervisor's
// families and fdp_supervisor_engine_metrics_up 0; it waited 6 s before.
// Both endpoints serve OpenMetrics when asked (content type, `# EOF`).
func TestMetricsUpHungEngine(t *testing.T) {
	bin := shippedBinaries(t)
	privateShm(t)
	inst := uniqueInstance(t, "mxhung")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --status, "0"], restart: true}
hang: {engine_timeout: 30s, engine_start_timeout: 30s}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startLogged(t, filepath.Join(bin, "engine"), "up", "--config", path, "--metrics", "127.0.0.1:0")
	addr := up.wait(t, "the metrics address", regexp.MustCompile(`msg="metrics listening" addr=(127\.0\.0\.1:\d+)`))
	url := "http://" + addr + "/metrics"
	waitFor(t, "the engine's figures", 20*time.Second, func() bool {
		return mval(scrape(url), "fdp_supervisor_engine_metrics_up") == 1
	})

	// OpenMetrics, negotiated, on up's endpoint and on the engine's.
	engineSock := up.wait(t, "the engine's endpoint", regexp.MustCompile(`msg="metrics listening" child=engine.* addr=(/\S+)`))
	unixClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", engineSock)
		}}}
	for _, tc := range []struct {
		c   *http.Client
		url string
	}{{http.DefaultClient, url}, {unixClient, "http://engine/metrics"}} {
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
		resp, err := tc.c.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text"), resp.Header.Get("Content-Type"))
		require.True(t, strings.HasSuffix(string(body), "# EOF\n"), "%s: ends %q", tc.url, body[max(0, len(body)-40):])
		require.Contains(t, string(body), "fdp_engine_frames_total")
	}

	epid, err := strconv.Atoi(up.find(childPIDRe("engine")))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(epid, syscall.SIGSTOP))
	defer syscall.Kill(epid, syscall.SIGCONT)
	for _, tc := range []struct {
		header string
		bound  time.Duration
	}{{"", time.Second}, {"0.5", 400 * time.Millisecond}} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if tc.header != "" {
			req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", tc.header)
		}
		t0 := time.Now()
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		require.NoError(t, err, "no answer within 3s with the engine stopped")
		p := expfmt.NewTextParser(pmodel.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		require.NoError(t, err)
		require.Equal(t, 0.0, mval(fams, "fdp_supervisor_engine_metrics_up"), "header %q", tc.header)
		require.NotNil(t, fams["fdp_supervisor_deaths_total"], "the supervisor's own figures")
		require.GreaterOrEqual(t, took, tc.bound, "header %q: waited the budget for the engine", tc.header)
		require.Less(t, took, tc.bound+time.Second, "header %q: answered within the budget", tc.header)
	}
}

// TestMetricsUpKilledDirCollected: `engine up --metrics` killed with
// SIGKILL cannot remove its private directory (the engine's socket in
// it); `engine gc` finds it stale by the creator pid and start time in its
// name and removes it (it stayed forever before).
func TestMetricsUpKilledDirCollected(t *testing.T) {
	bin := shippedBinaries(t)
	privateShm(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	inst := uniqueInstance(t, "mxkill")
	up := startLogged(t, filepath.Join(bin, "engine"), "up", "--instance", inst, "--metrics", "127.0.0.1:0")
	sock := up.wait(t, "the engine's endpoint", regexp.MustCompile(`msg="metrics listening" child=engine.* addr=(/\S+)`))
	dir := filepath.Dir(sock)
	require.Equal(t, tmp, filepath.Dir(dir))
	epid, err := strconv.Atoi(up.find(childPIDRe("engine")))
	require.NoError(t, err)
	require.NoError(t, up.cmd.Process.Kill())
	_ = up.cmd.Wait()
	// The engine outlives its supervisor until it sees it gone; stop it.
	_ = syscall.Kill(epid, syscall.SIGKILL)
	_, err = os.Stat(dir)
	require.NoError(t, err, "a SIGKILLed up leaves its directory")

	out, err := exec.Command(filepath.Join(bin, "engine"), "gc", "--dry-run").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "would remove "+dir+"\n")
	out, err = exec.Command(filepath.Join(bin, "engine"), "gc").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "removed "+dir+"\n")
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)
}
