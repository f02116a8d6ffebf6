// Package demo replays the seed scenarios end to end against an in-process
// cvault server on the embedded store (`cvault demo`): each scenario prints
// one line per step and fails on the first step whose check does not hold.
// The scenarios talk to the server only over HTTPS, through the Azure SDK,
// cvault's REST API and the guest agent, as a user would.
//
// CVAULT_DEMO_BREAK=<step> (Config.Break) makes the named step fail after it
// ran, so tests prove every step's failure reaches the exit status.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Config configures a run.
type Config struct {
	Out io.Writer
	// Break names a step to fail on purpose (CVAULT_DEMO_BREAK).
	Break string
	// Logs receives the server's log (nil: discarded).
	Logs io.Writer
}

// Scenario is one replayed seed.
type Scenario struct {
	Name  string
	Title string
	Steps []string // step names, in order
	Run   func(ctx context.Context, cfg Config, r *Runner) error
}

// Scenarios lists every scenario built so far.
func Scenarios() []Scenario {
	return []Scenario{skrScenario(), crossTenantScenario(), cvmDiskScenario(), rotateScenario()}
}

// ErrStep wraps a failed step.
var ErrStep = errors.New("demo step failed")

// Runner prints steps and stops at the first failure.
type Runner struct {
	out      io.Writer
	brk      string
	scenario string
	n        int
}

// Step runs fn, printing its one-line outcome; an error (or Break naming
// the step) fails the scenario.
func (r *Runner) Step(name string, fn func() (string, error)) error {
	r.n++
	msg, err := fn()
	if err == nil && r.brk == name {
		err = fmt.Errorf("CVAULT_DEMO_BREAK=%s", name)
	}
	if err != nil {
		fmt.Fprintf(r.out, "  %2d %-22s FAIL  %v\n", r.n, name, err)
		return fmt.Errorf("%w: %s/%s: %w", ErrStep, r.scenario, name, err)
	}
	fmt.Fprintf(r.out, "  %2d %-22s ok    %s\n", r.n, name, msg)
	return nil
}

// namedStep is one step of a scenario: its name and what it does.
type namedStep struct {
	name string
	fn   func(context.Context) (string, error)
}

// steps runs steps in order (see Step) and stops at the first that fails.
func (r *Runner) steps(ctx context.Context, steps []namedStep) error {
	for _, s := range steps {
		if err := r.Step(s.name, func() (string, error) { return s.fn(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// Run runs the named scenarios (none: all), in order, stopping at the first failure.
func Run(ctx context.Context, cfg Config, names ...string) error {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	all := Scenarios()
	var run []Scenario
	if len(names) == 0 || slices.Contains(names, "all") {
		run = all
	} else {
		for _, n := range names {
			i := slices.IndexFunc(all, func(s Scenario) bool { return strings.EqualFold(s.Name, n) })
			if i < 0 {
				return fmt.Errorf("demo: no scenario %q (have %s)", n, strings.Join(scenarioNames(all), ", "))
			}
			run = append(run, all[i])
		}
	}
	for _, s := range run {
		fmt.Fprintf(cfg.Out, "== %s: %s\n", s.Name, s.Title)
		r := &Runner{out: cfg.Out, brk: cfg.Break, scenario: s.Name}
		if err := s.Run(ctx, cfg, r); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "== %s: all %d steps held\n", s.Name, r.n)
	}
	return nil
}

func scenarioNames(s []Scenario) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Name
	}
	return out
}
