package telemetry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c on reg, or replaces it with the collector reg
// already has under its name (a second set of the same metrics on one
// registry shares the first's). Other errors are programming errors.
func Register[C prometheus.Collector](reg prometheus.Registerer, c *C) {
	err := reg.Register(*c)
	if err == nil {
		return
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return
		}
	}
	panic(err)
}
