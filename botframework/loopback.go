package botframework

import (
	"net"
	"strings"
)

// IsLoopback reports whether host, with or without a port, names this
// machine's loopback interface: localhost (any case), an IPv4 address in
// 127.0.0.0/8, or ::1 (bracketed or not). A name that only begins like one
// of those (127.0.0.1.example.com, localhost.example.com) is not loopback:
// DNS can point it anywhere.
func IsLoopback(host string) bool {
	// Brackets enclose an IPv6 address, never a name. A port is split off
	// only where there can be one: SplitHostPort's error for a bare host
	// costs an allocation, and the connector asks for every reply.
	bracketed := strings.HasPrefix(host, "[")
	if bracketed && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if bracketed || strings.Count(host, ":") == 1 {
		h, _, err := net.SplitHostPort(host)
		if err != nil {
			return false
		}
		host = h
	}
	if !bracketed && strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
