package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	khttp "github.com/microsoft/kiota-http-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/microsoftgraph/msgraph-sdk-go/chats"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Installations = (*Client)(nil)

// Upgrade posts Graph's upgrade action for the installation, consenting to
// exactly consent. It is sent again only where it certainly did not take
// effect (429, refused connection); an error that leaves it unknown (5xx, a
// lost answer) carries bot.ErrUpgradeUncertain. The action takes no version: Graph moves the
// installation to the catalog's current definition, so the caller decides
// beforehand that this is the approved one (approval.MayUpgrade). An app without
// RSC gets a body without consentedPermissionSet.
func (c *Client) Upgrade(ctx context.Context, in approval.Installation, consent []approval.Permission) error {
	scope := in.Scope
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return err
	}
	set, err := consentSet(consent)
	if err != nil {
		return err
	}
	body := chats.NewItemInstalledAppsItemUpgradePostRequestBody()
	if len(consent) > 0 {
		body.SetConsentedPermissionSet(set)
	}
	post := func() error {
		opts := []abstractions.RequestOption{upgradeRetry(c.opts.MaxRetries)}
		switch scope.Kind {
		case approval.ScopeChat:
			return g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(in.ID).Upgrade().Post(ctx, body,
				&chats.ItemInstalledAppsItemUpgradeRequestBuilderPostRequestConfiguration{Options: opts})
		case approval.ScopeTeam:
			tb := teams.NewItemInstalledAppsItemUpgradePostRequestBody()
			if len(consent) > 0 {
				tb.SetConsentedPermissionSet(set)
			}
			return g.Teams().ByTeamId(scope.ID).InstalledApps().ByTeamsAppInstallationId(in.ID).Upgrade().Post(ctx, tb,
				&teams.ItemInstalledAppsItemUpgradeRequestBuilderPostRequestConfiguration{Options: opts})
		case approval.ScopeUser:
			// Graph v1.0 has POST /users/{id}/teamwork/installedApps/{id}/upgrade
			// but msgraph-sdk-go has no builder for it. The chat builder posts
			// the same action with the same body shape, so it is aimed at the
			// user's URL; the SDK's auth, retry and error mapping still apply.
			raw := c.opts.BaseURL + "/users/" + url.PathEscape(scope.ID) + "/teamwork/installedApps/" + url.PathEscape(in.ID) + "/upgrade"
			return chats.NewItemInstalledAppsItemUpgradeRequestBuilder(raw, g.GetAdapter()).Post(ctx, body,
				&chats.ItemInstalledAppsItemUpgradeRequestBuilderPostRequestConfiguration{Options: opts})
		}
		return bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	err = post()
	// A refused connection never reached Graph: the one transport error
	// that is safe to send again.
	for wait := 250 * time.Millisecond; errors.Is(err, syscall.ECONNREFUSED) && wait < 4*time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
			return translate(err, "upgrade "+in.DisplayName+" in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
		case <-time.After(wait):
			err = post()
		}
	}
	var own *bot.Error
	if errors.As(err, &own) {
		return err
	}
	if terr := translate(err, "upgrade "+in.DisplayName+" in "+scopeWords(scope.Kind), installationPermission(scope.Kind)); terr != nil {
		if mayHaveTakenEffect(err) {
			return fmt.Errorf("%w (%w)", terr, bot.ErrUpgradeUncertain)
		}
		return terr
	}
	return nil
}

// upgradeRetry is the retry rule of the upgrade POST: it is sent again only
// when Graph certainly did not act on it, a 429 (after its Retry-After).
// Never on 502, 503 or 504: those may come after the upgrade took, and the
// bot reads the installation back instead.
func upgradeRetry(maxRetries int) *khttp.RetryHandlerOptions {
	return &khttp.RetryHandlerOptions{
		MaxRetries: maxRetries,
		ShouldRetry: func(_ time.Duration, _ int, _ *http.Request, resp *http.Response) bool {
			return resp != nil && resp.StatusCode == http.StatusTooManyRequests
		},
	}
}

// mayHaveTakenEffect reports whether a failed upgrade POST may still have
// upgraded the installation: Graph answered 5xx, or the answer was lost.
func mayHaveTakenEffect(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	var odata *odataerrors.ODataError
	var api *abstractions.ApiError
	switch {
	case errors.As(err, &odata):
		return odata.ResponseStatusCode >= 500
	case errors.As(err, &api):
		return api.ResponseStatusCode >= 500
	}
	return true // no answer: a timeout, a reset connection
}
