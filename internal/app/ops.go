package app

import (
	"net/http"
	"sync/atomic"
)

// isOpsPath reports whether path is one a probe or a scraper calls: with
// OPS_PORT these move off PORT, so an Ingress in front of PORT exposes
// /api/messages alone.
func isOpsPath(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// portHandler serves the paths of one port of two: the ops paths on the ops
// port, everything else on the bot's. Once draining, the ops port's /readyz
// says so while /healthz stays up: the bot is finishing upgrades after
// SIGTERM, and a liveness probe failing then would kill it before they are
// recorded.
type portHandler struct {
	next     http.Handler
	ops      bool
	draining *atomic.Bool
}

func (h portHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isOpsPath(r.URL.Path) != h.ops {
		http.NotFound(w, r)
		return
	}
	if h.ops && r.URL.Path == "/readyz" && h.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	h.next.ServeHTTP(w, r)
}
