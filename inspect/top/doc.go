// Package top is `engine top`: a live terminal view of an instance (frame
// rate, publish and frame time percentiles, memory held, each module's
// state, runs, lag, tick time, failures and rejected commands), read from
// the instance's segments alone, read-only, like `engine stat`.
//
// It is three parts that know nothing of each other's insides:
//
//   - Source (source.go) maps the segments read-only and takes a Snapshot:
//     plain values copied out of shared memory with the layout's atomic
//     loads. It never writes to a segment and never waits for the engine;
//     when the engine dies it says so, and when a new engine replaces the
//     world segment it re-attaches to it.
//   - Compute and Tracker (model.go) turn two snapshots into a View: rates
//     and deltas over the interval between them (frame rate = Δpublishes /
//     Δt, percentiles of the histogram counts added in between), and what
//     happened to the engine. No terminal, no clock: tests drive it with
//     snapshots of known counter values.
//   - Render (render.go) lays a View out as text; the TUI (tui.go) shows it
//     every interval, and --once (or output that is not a terminal) prints
//     one plain frame.
//
// The terminal side uses Bubble Tea (github.com/charmbracelet/bubbletea)
// with Lip Gloss for styles: its Elm-style loop (a model updated by
// messages, a View that returns a string) keeps the terminal state out of
// the model, so the text the TUI shows is exactly the string Render
// returns and the plain-text frame is the same function without styles;
// it restores the terminal (raw mode, alternate screen) on every way out,
// q, Ctrl-C, SIGTERM or a panic; and it is widely used and maintained. A
// cell-level library (tcell, tview) would have us draw cells and keep a
// second, plain-text rendering for scripts.
package top
