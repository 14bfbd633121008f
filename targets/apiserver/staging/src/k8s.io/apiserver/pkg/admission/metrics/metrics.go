// Package metrics times admission plugins. The wrapper is a struct with
// value-receiver methods so, as in the real apiserver, interface calls go
// through the generated (*pluginHandlerWithMetrics) wrappers.
package metrics

import (
	"context"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/admission"
)

// Observation is one timed plugin call.
type Observation struct {
	Calls    uint64
	Rejected uint64
	Total    time.Duration
}

// Registry accumulates observations by plugin name and step.
type Registry struct {
	mu   sync.Mutex
	data map[string]*Observation
}

// Metrics is where the server's admission plugins report.
var Metrics = &Registry{data: make(map[string]*Observation)}

func (r *Registry) observe(elapsed time.Duration, rejected bool, name, step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.data[name+"/"+step]
	if o == nil {
		o = &Observation{}
		r.data[name+"/"+step] = o
	}
	o.Calls++
	o.Total += elapsed
	if rejected {
		o.Rejected++
	}
}

// Snapshot copies the current observations.
func (r *Registry) Snapshot() map[string]Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Observation, len(r.data))
	for k, v := range r.data {
		out[k] = *v
	}
	return out
}

type pluginHandlerWithMetrics struct {
	admission.Interface
	name     string
	registry *Registry
}

// WithControllerMetrics wraps a plugin so each Admit/Validate is timed.
func WithControllerMetrics(i admission.Interface, name string) admission.Interface {
	return pluginHandlerWithMetrics{Interface: i, name: name, registry: Metrics}
}

// Admit is a no-op for plugins that only validate, matching the chain's
// expectation that every wrapper implements both steps.
func (p pluginHandlerWithMetrics) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	mutatingHandler, ok := p.Interface.(admission.MutationInterface)
	if !ok {
		return nil
	}
	start := time.Now()
	err := mutatingHandler.Admit(ctx, a, o)
	p.registry.observe(time.Since(start), err != nil, p.name, "admit")
	return err
}

// Validate is a no-op for plugins that only mutate.
func (p pluginHandlerWithMetrics) Validate(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	validatingHandler, ok := p.Interface.(admission.ValidationInterface)
	if !ok {
		return nil
	}
	start := time.Now()
	err := validatingHandler.Validate(ctx, a, o)
	p.registry.observe(time.Since(start), err != nil, p.name, "validate")
	return err
}
