package bot_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/internal/logtest"
)

// ops lists a trail's operations per approval, in order, with who did
// each (their Entra object id) and any detail.
func ops(trail []approval.AuditEvent) map[string][]string {
	out := map[string][]string{}
	for _, e := range trail {
		s := string(e.Operation)
		if e.ActorID != "" {
			s += " by " + e.ActorID[:4]
		}
		if e.Detail != "" {
			s += " (" + strings.SplitN(e.Detail, ";", 2)[0] + ")"
		}
		out[e.ApprovalID] = append(out[e.ApprovalID], s)
	}
	return out
}

// Each request, approval, failure, retry, upgrade and rejection is one
// event of the tenant's trail, by whom it was; the history shows the
// outcomes alone, as before.
func TestEveryDecisionIsInTheTenantsAuditTrail(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.graph.upgrade = func(approval.Installation) error {
		return refusedByGraph("TeamsAppInstallation.ReadWriteAndConsentForChat.All")
	}
	f.say("check")
	polls, tasks := f.approvalOf("Polls"), f.approvalOf("Tasks")
	f.click("approve", polls, owner)
	f.graph.upgrade = nil
	f.click("retry", polls, owner)
	f.click("reject", tasks, owner)
	f.drain()
	want := map[string][]string{
		polls: {"AppUpgradeRequested by 1111", "AppUpgradeApproved by 1111", "AppUpgradeFailed by 1111 (graph_refused)",
			"AppUpgradeApproved by 1111 (retry)", "AppUpgraded by 1111"},
		tasks: {"AppUpgradeRequested by 1111", "AppUpgradeRejected by 1111"},
	}
	trail := f.state.Trail(tenant)
	if got := ops(trail); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trail:\n got %v\nwant %v", got, want)
	}
	for _, e := range trail {
		if e.ScopeKind != approval.ScopeChat || e.ScopeID != chatID || e.To != "1.1.0" || e.From != "1.0.0" || len(e.Added) != 1 {
			t.Errorf("event %+v does not say where and what", e)
		}
	}
	f.say("history")
	h := cardText(t, f.conn.replies[len(f.conn.replies)-1])
	if strings.Count(h, "Polls") != 2 || strings.Count(h, "Tasks") != 1 {
		t.Errorf("history shows %s, want the three outcomes", h)
	}
}

// Redis refusing the trail's writes fails no click: the write is retried
// while Redis is briefly away, and an event it could not write is logged
// as an error naming it, not dropped in silence.
func TestAuditWritesAreRetriedAndNeverFailAClick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
		var logs logtest.Buffer
		f.bot = f.withOptions(func(o *bot.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
		down := bot.Errorf(bot.CodeUnavailable, "redis: connection refused")
		// Briefly away: the request's event lands on a retry.
		f.state.FailAudit(down)
		time.AfterFunc(time.Second, func() { f.state.FailAudit(nil) })
		f.say("check")
		a := f.onlyApproval()
		if got := ops(f.state.Trail(tenant))[a.ID]; len(got) != 1 || logs.String() != "" {
			t.Fatalf("trail %v, logs %s: want the request recorded on a retry", got, logs.String())
		}
		// Away for good: the click still upgrades, and says what is lost.
		f.state.FailAudit(down)
		if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "was upgraded") {
			t.Errorf("approve while the trail is down: %s", resp)
		}
		f.drain()
		l := logs.String()
		if !strings.Contains(l, "level=ERROR msg=\"cannot record an audit event") || !strings.Contains(l, "operation=AppUpgradeApproved") ||
			!strings.Contains(l, "cannot record an outcome") || !strings.Contains(l, "operation=AppUpgraded ") {
			t.Errorf("logs do not name the lost events: %s", l)
		}
		if f.onlyApproval().Status != approval.StatusUpgraded {
			t.Errorf("status %s", f.onlyApproval().Status)
		}
	})
}
