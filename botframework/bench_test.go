package botframework_test

import (
	"context"
	"testing"

	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
)

// BenchmarkVerifyToken is the inbound check most activities pay: the
// channel reuses a token for about an hour, so its signature was verified
// with an earlier activity; the claims are checked again.
func BenchmarkVerifyToken(b *testing.B) {
	v, auth := verifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyToken(ctx, auth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyNewToken is the check a token's first activity pays: parse
// the RS256 JWT, find its key, verify the signature and the claims.
func BenchmarkVerifyNewToken(b *testing.B) {
	v, auth := verifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v.ForgetTokens()
		if _, err := v.VerifyToken(ctx, auth); err != nil {
			b.Fatal(err)
		}
	}
}

func verifier(b *testing.B) (*botframework.Verifier, string) {
	b.Helper()
	ch := fakechannel.NewChannel(b, appID)
	ch.ServiceURL = svcURL
	v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL()})
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return v, "Bearer " + ch.Token(b)
}
