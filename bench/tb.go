package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// runTB lends the bench's lifetime to the test kit's fakes (botframework/fakechannel, internal/fakeentra,
// which take a testing.TB): they call only Helper, Cleanup, Fatal and
// Fatalf. Cleanups run when the bench ends; Fatal stops it.
type runTB struct {
	testing.TB // nil: any other method is a bug in the bench

	mu       sync.Mutex
	cleanups []func()
}

func (t *runTB) Helper() {}

func (t *runTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *runTB) Fatal(args ...any) { t.die(fmt.Sprint(args...)) }

func (t *runTB) Fatalf(format string, args ...any) { t.die(fmt.Sprintf(format, args...)) }

func (t *runTB) die(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	t.close()
	os.Exit(1)
}

// close runs the cleanups, last first.
func (t *runTB) close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
