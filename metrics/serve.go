package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/supervisor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the endpoints serve their metrics.
const Path = "/metrics"

// Listen opens the listener of a metrics endpoint: addr is "host:port"
// (port 0: any free port) or "unix:/path" (supervisor.ParseListenAddr). A
// unix socket file that no process listens on any more (a killed engine's:
// a connect is refused) is replaced; one a live process listens on is an
// error.
func Listen(addr string) (net.Listener, error) {
	network, address, err := supervisor.ParseListenAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen(network, address)
	if err != nil && network == "unix" && errors.Is(err, syscall.EADDRINUSE) {
		if c, derr := net.DialTimeout("unix", address, time.Second); derr == nil {
			c.Close()
			return nil, fmt.Errorf("metrics: %s: a live process listens there", address)
		}
		if st, serr := os.Lstat(address); serr == nil && st.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(address) // a dead listener's socket file
			ln, err = net.Listen(network, address)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// Serve serves g on Path of ln (the Prometheus exposition formats,
// negotiated) until the returned stop is called, and logs the bound
// address in one line ("metrics listening", addr=...), so that a caller
// that listened on port 0 can be found. A family that fails to gather is
// left out of that scrape and logged; the others are served.
func Serve(ln net.Listener, g prometheus.Gatherer, log *slog.Logger) (stop func()) {
	return serveHandler(ln, handlerFor(g, log), log)
}

// handlerFor is the /metrics handler of g: text, protobuf and OpenMetrics,
// negotiated from the request's Accept header.
func handlerFor(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          errorLog{log},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// serveHandler serves h on Path of ln (see Serve).
func serveHandler(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics endpoint stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String(), "path", Path)
	return func() {
		_ = srv.Close()
		<-done
	}
}

// errorLog hands promhttp's errors to a slog logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// EngineRegistry returns a registry of eng's metrics (NewEngineCollector)
// and of its process (the Go runtime's go_* and the process's process_*
// families), what `engine run --metrics` serves.
func EngineRegistry(eng *host.Engine) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(NewEngineCollector(eng),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}
