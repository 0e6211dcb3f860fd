package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// demoModules is the embedded default module set of `engine up`: a fast
// telemetry module, a convoy of three slow AI modules at 10 Hz, and an alert
// module reading events.
var demoModules = []struct{ name, kind string }{
	{"telemetry", "telemetry"},
	{"ai-1", "ai"}, {"ai-2", "ai"}, {"ai-3", "ai"},
	{"alert", "alert"},
}

func init() {
	o := &runOpts{}
	c := &cobra.Command{
		Use:   "up",
		Short: "Run the engine and the built-in demo modules (restarted if they crash), then print what happened",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if o.duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, o.duration)
				defer cancel()
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			runner, err := modrunnerPath()
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			engineCtx, stopEngine := context.WithCancel(context.Background())
			defer stopEngine()
			engErr := make(chan error, 1)
			go func() { engErr <- runEngine(engineCtx, o, log) }()
			restarts := make([]int, len(demoModules))
			for i, m := range demoModules {
				wg.Add(1)
				go func() {
					defer wg.Done()
					restarts[i] = superviseModule(ctx, runner, o.instance, m.name, m.kind, log)
				}()
			}
			select {
			case <-ctx.Done():
			case err := <-engErr:
				return err
			}
			wg.Wait() // modules get SIGTERM and exit first
			stopEngine()
			err = <-engErr
			for i, m := range demoModules {
				fmt.Printf("module %-10s restarts %d\n", m.name, restarts[i])
			}
			return err
		},
	}
	o.flags(c)
	rootCmd.AddCommand(c)
}

func modrunnerPath() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "modrunner")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("modrunner")
	if err != nil {
		return "", fmt.Errorf("modrunner binary not found next to engine or in PATH (run make build)")
	}
	return p, nil
}

// superviseModule runs one module process until ctx ends, restarting it with
// exponential backoff when it dies. It returns the number of restarts.
func superviseModule(ctx context.Context, runner, instance, name, kind string, log *slog.Logger) int {
	backoff := 50 * time.Millisecond
	restarts := 0
	for {
		cmd := exec.Command(runner, kind)
		cmd.Env = append(os.Environ(), "FDP_INSTANCE="+instance, "FDP_MODULE="+name)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stderr, _ := cmd.StderrPipe()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			log.Error("cannot start module", "module", name, "err", err)
			return restarts
		}
		go prefixLines(stderr, name)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			return restarts
		case err := <-done:
			log.Warn("module exited", "module", name, "pid", cmd.Process.Pid, "status", fmt.Sprint(err))
		}
		if time.Since(started) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return restarts
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
		restarts++
	}
}

func prefixLines(r io.Reader, name string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", name, sc.Text())
	}
}
