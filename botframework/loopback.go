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
	// Brackets enclose an IPv6 address, never a name.
	bracketed := strings.HasPrefix(host, "[")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if bracketed && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if !bracketed && strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
