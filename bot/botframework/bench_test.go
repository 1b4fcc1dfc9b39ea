package botframework_test

import (
	"context"
	"testing"

	"github.com/upgradeapprovals/bot/bot/botframework"
	"github.com/upgradeapprovals/bot/bot/bottest"
)

// BenchmarkVerifyToken is the inbound check every activity pays: parse the
// RS256 JWT, find its key, verify the signature and the claims.
func BenchmarkVerifyToken(b *testing.B) {
	ch := bottest.NewChannel(b, appID)
	ch.ServiceURL = svcURL
	v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Load(ctx); err != nil {
		b.Fatal(err)
	}
	auth := "Bearer " + ch.Token(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyToken(ctx, auth); err != nil {
			b.Fatal(err)
		}
	}
}
