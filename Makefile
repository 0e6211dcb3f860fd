GO ?= go
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
PKGS := ./...
BIN := bin

.PHONY: all build demo test lint fmt-check vet staticcheck unit fuzz-smoke bench soak plot clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## demo: build and run the engine with its embedded default world and modules, then print what happened.
demo: build
	./$(BIN)/engine up --duration 10s --chaos 2s

## test: everything CI runs: formatting, vet, staticcheck, race-enabled tests, a short fuzz smoke.
test: lint unit fuzz-smoke

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Each fuzz target runs briefly on top of its committed seed corpus: a count
# of inputs, not a duration (a time limit ended some runs with "context
# deadline exceeded" and no failing input when a worker was slow to stop).
FUZZ_TIME ?= 20000x
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    ok=0; for try in 1 2; do \
	      if $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZ_TIME) -fuzzminimizetime=100x $$pkg > .fuzz.out 2>&1; then ok=1; break; fi; \
	      tail -30 .fuzz.out; \
	      if [ -n "$$(git status --porcelain -- $$dir/testdata/fuzz 2>/dev/null)" ]; then echo "new failing input under $$dir/testdata/fuzz"; break; fi; \
	      echo "fuzzing failed without a failing input (worker crash or hang): retrying once"; \
	    done; \
	    rm -f .fuzz.out; [ $$ok = 1 ] || exit 1; \
	  done; \
	done

## bench: every benchmark, with ratios against baselines measured in the same run.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 $(PKGS) | tee bench.out

# The module-kill soak (10,000 SIGKILLs), 10 minutes of engine and module
# kills under `engine up` with every observed frame audited, and a 10-minute
# healthy run under `engine up` (one module SIGKILLed every 3 s): 0 failures
# of the other modules, no tick without its frame, no death after the stop;
# a 60 s recording of the demo with module kills, replayed frame for frame.
# Then the recorder's differential round trip over 200 random worlds.
soak:
	FDP_SOAK_KILLS=10000 FDP_CHAOS_DURATION=10m FDP_HEALTHY_DURATION=10m FDP_REPLAY_DURATION=60s $(GO) test -count=1 -timeout 90m -run 'Soak|Chaos|HealthyRun|ReplayRoundTrip' -v ./tests/...
	FDP_RECORD_SEEDS=200 $(GO) test -count=1 -timeout 30m -run 'RoundTripDifferential' ./record

plot:
	$(GO) run ./docs/plot $(PLOT_FLAGS)

clean:
	rm -rf $(BIN) bench.out
