package botframework_test

import (
	"testing"

	"github.com/upgradeapprovals/bot/botframework"
)

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"localhost:3978", true},
		{"127.0.0.1", true},
		{"127.0.0.1:3978", true},
		{"127.1.2.3", true},
		{"127.255.255.254:80", true},
		{"::1", true},
		{"[::1]", true},
		{"[::1]:3978", true},
		{"0:0:0:0:0:0:0:1", true},

		{"", false},
		{":3978", false},
		{"0.0.0.0", false},
		{"::", false},
		{"[::]:3978", false},
		{"128.0.0.1", false},
		{"10.0.0.1:3978", false},
		{"::2", false},
		{"evil.example", false},
		{"evil.example:3978", false},
		{"127.0.0.1.evil.example", false},
		{"127.0.0.1.evil.example:3978", false},
		{"localhost.evil.example", false},
		{"localhost.", false},
		{"[localhost]", false},
		{"[localhost]:3978", false},
		{"[127.0.0.1", false},
		{"[::1]x", false},
		{"::1]", false},
		{"localhost:3978:1", false},
		{"null", false},
	} {
		if got := botframework.IsLoopback(tc.host); got != tc.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
