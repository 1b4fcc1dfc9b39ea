package bot_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/internal/logtest"
)

// fakePolicies is a tenant's consent policy as Graph reads it.
type fakePolicies struct {
	mu    sync.Mutex
	facts approval.ConsentFacts
	err   error
	reads int
}

func (p *fakePolicies) ConsentFacts(context.Context, string) (approval.ConsentFacts, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	return p.facts, p.err
}

func (p *fakePolicies) set(ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.facts = approval.ConsentFacts{Read: true, GrantPolicies: ids}
}

const chatsAllApps = "ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-chat"

// A chat whose owners may not consent gets a card that says an admin is
// needed, without a button that would fail; a click on an old one changes
// nothing.
func TestCheckWhereOwnersMayNotConsentSaysAnAdminIsNeeded(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	policies := &fakePolicies{}
	policies.set() // nothing assigned: chat consent is off
	f.bot = f.withOptions(func(o *bot.Options) { o.Consent = policies })
	f.say("check")
	card := cardText(t, f.conn.replies[0])
	if strings.Contains(card, `"verb":"approve"`) || !strings.Contains(card, "An admin needs to allow this upgrade") ||
		!strings.Contains(card, "Global Administrator") {
		t.Errorf("card %s", card)
	}
	a := f.onlyApproval()
	if a.Status != approval.StatusNeedsAdmin || a.Problem.Reason != approval.ReasonConsentPolicy {
		t.Fatalf("approval %+v", a)
	}
	f.click("approve", a.ID, owner)
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != approval.StatusNeedsAdmin {
		t.Errorf("a click upgraded (%d) or changed the request (%s)", f.graph.upgradeCount(), f.onlyApproval().Status)
	}

	// The admin allows it: the next look offers Approve again.
	policies.set(chatsAllApps)
	f.say("check")
	if a := f.onlyApproval(); a.Status != approval.StatusPending {
		t.Fatalf("after the policy changed: %s", a.Status)
	}
	if card := cardText(t, f.conn.replies[len(f.conn.replies)-1]); !strings.Contains(card, `"verb":"approve"`) {
		t.Errorf("card after the policy changed: %s", card)
	}
}

// Where the policy cannot be read, or says nothing, cards are as before.
func TestUnreadablePolicyLeavesCardsAsBefore(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	policies := &fakePolicies{err: &bot.Error{Code: bot.CodeForbidden, Message: "graph: read the tenant's authorization policy: 403"}}
	var log logtest.Buffer
	f.bot = f.withOptions(func(o *bot.Options) { o.Consent = policies; o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	f.say("check")
	if card := cardText(t, f.conn.replies[0]); !strings.Contains(card, `"verb":"approve"`) {
		t.Errorf("card %s", card)
	}
	f.now = f.now.Add(31e9)
	f.say("check")
	if n := strings.Count(log.String(), "cannot read the tenant's consent policy"); n != 1 {
		t.Errorf("said %d times that the policy cannot be read, want once:\n%s", n, log.String())
	}
}

// An upgrade Graph refuses for consent needs an admin: it is not offered
// for Retry, and the policy is read afresh.
func TestUpgradeRefusedForConsentNeedsAnAdmin(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	policies := &fakePolicies{}
	policies.set("ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-chat")
	f.bot = f.withOptions(func(o *bot.Options) { o.Consent = policies })
	f.graph.upgrade = func(approval.Installation) error {
		return graphFailure(bot.CodeForbidden, "graph: upgrade: 412", approval.Problem{Reason: approval.ReasonConsentNotAllowed,
			Status: 412, GraphCode: "PreconditionFailed",
			GraphMessage: "Failed to execute TeamsGraphService backend request IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest. Workload Unknown"})
	}
	f.say("check")
	a := f.onlyApproval()
	before := policies.reads
	resp := f.click("approve", a.ID, owner)
	if strings.Contains(resp, `"verb":"retry"`) || strings.Contains(resp, `"verb":"approve"`) || !strings.Contains(resp, "An admin needs to allow this upgrade") {
		t.Errorf("response %s", resp)
	}
	got := f.onlyApproval()
	if got.Status != approval.StatusNeedsAdmin || got.Problem.Status != 412 || got.Problem.ConsentPolicy == "" {
		t.Errorf("approval %+v", got)
	}
	if policies.reads != before+1 {
		t.Errorf("the policy was read %d times after the refusal, want once", policies.reads-before)
	}
	// The same policy does not bring the button back (the same refusal
	// would follow); nor does a retry click.
	f.click("retry", a.ID, owner)
	f.now = f.now.Add(31e9)
	f.say("check")
	if f.graph.upgradeCount() != 1 || f.onlyApproval().Status != approval.StatusNeedsAdmin {
		t.Errorf("%d upgrades, status %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}
