package botframework

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the endpoint's and the connector's Prometheus metrics. A nil
// *Metrics records nothing.
type Metrics struct {
	activities     *prometheus.CounterVec
	authRejections *prometheus.CounterVec
	connectorCalls *prometheus.HistogramVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		activities: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgradebot_activities_total",
			Help: "Activities received on /api/messages, by activity type and result.",
		}, []string{"type", "result"}),
		authRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgradebot_auth_rejections_total",
			Help: "Requests to /api/messages refused as unauthenticated, by reason.",
		}, []string{"reason"}),
		connectorCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "upgradebot_connector_request_duration_seconds",
			Help:    "Bot Framework connector calls, by operation and HTTP status (0: no response).",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation", "status"}),
	}
	reg.MustRegister(m.activities, m.authRejections, m.connectorCalls)
	return m
}

func (m *Metrics) observeActivity(activityType, result string) {
	if m == nil {
		return
	}
	if activityType == "" {
		activityType = "unknown"
	}
	m.activities.WithLabelValues(activityType, result).Inc()
}

func (m *Metrics) observeAuthRejection(reason string) {
	if m != nil {
		m.authRejections.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) observeConnector(op string, status int, d time.Duration) {
	if m != nil {
		m.connectorCalls.WithLabelValues(op, strconv.Itoa(status)).Observe(d.Seconds())
	}
}
