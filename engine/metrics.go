package engine

// Metric is one of an engine's own measurements: what etcd, on bbolt
// alone, cannot show (compactions, flushes, cache hits...).
type Metric struct {
	// Name is the metric's name without a prefix, in Prometheus style
	// (e.g. "compactions_total"); the server exports it as
	// strata_engine_<Name>.
	Name string
	// Help says what it measures.
	Help string
	// Counter marks a monotonic count; otherwise it is a gauge.
	Counter bool
	// Value is the measurement now.
	Value float64
}

// MetricsReporter is implemented by engines that report measurements of
// their own. Metrics must be cheap: the server calls it on every scrape.
type MetricsReporter interface {
	Metrics() ([]Metric, error)
}
