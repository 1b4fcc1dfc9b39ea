package state_test

import (
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/state"
)

// FuzzParseURL builds REDIS_URLs around a password and checks that parsing
// never panics, that a parsed URL keeps the whole password (whatever "/",
// "@" or "?" it holds) and that no error or redaction shows it.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, prefix, password, rest string) {
		secret := "S3CRET" + password
		raw := prefix + ":" + secret + "@" + rest
		o, err := state.ParseURL(raw)
		if strings.Contains(prefix+rest, "S3CRET") || strings.ContainsAny(password, " \t\r\n\"'`<>") {
			return // the marker would show up for other reasons
		}
		// A URL whose authority is unbroken (no space or quote before the
		// "@", no other "@" after it) is always redacted.
		if red := state.RedactURL(raw); strings.Contains(prefix, "://") &&
			!strings.ContainsAny(prefix[strings.Index(prefix, "://")+3:], "@ \t\r\n\"'`<>") &&
			!strings.Contains(rest, "@") && strings.Contains(red, "S3CRET") {
			t.Fatalf("RedactURL(%q) = %q shows the password", raw, red)
		}
		if err != nil {
			if strings.Contains(err.Error(), "S3CRET") {
				t.Fatalf("error %q shows the password", err)
			}
			return
		}
		if (prefix == "redis://" || prefix == "rediss://") && !strings.ContainsAny(rest, "@%") && !strings.ContainsAny(password, ":%") && o.Password != secret {
			t.Fatalf("%q: password %q, want %q", raw, o.Password, secret)
		}
	})
}
