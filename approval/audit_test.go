package approval

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEveryStatusHasItsOperation(t *testing.T) {
	for _, s := range Statuses() {
		op := OperationOf(s)
		if !slices.Contains(Operations(), op) {
			t.Errorf("status %s is recorded as %q, which Operations does not list", s, op)
		}
	}
	seen := map[Operation]bool{}
	for _, op := range Operations() {
		if seen[op] || !strings.HasPrefix(string(op), "App") {
			t.Errorf("operation %q is repeated or not named like Microsoft's audit log", op)
		}
		seen[op] = true
	}
	if got := OperationOf("unheard-of"); got != "AppUpgrade_unheard-of" {
		t.Errorf("a status without a line in the table is recorded as %q", got)
	}
}

func TestOutcomeEventSaysWhoDidWhatToWhich(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 30, 0, 0, time.FixedZone("", 3600))
	megan := Person{ID: "29:1", AADObjectID: "obj-megan", Name: "Megan"}
	a := Approval{ID: "apv_1", Status: StatusFailed, DecidedBy: &megan, DecidedAt: at,
		Problem: Problem{Reason: ReasonGraphRefused, Status: 403, GraphCode: "Forbidden", Permission: "TeamsAppInstallation.ReadWriteForChat.All"},
		Upgrade: PendingUpgrade{
			Installation: Installation{ID: "inst", TeamsAppID: "app-1", DisplayName: "Polls",
				Scope: Scope{Kind: ScopeChat, ID: "19:c@thread.v2", TenantID: "TENANT"}, Definition: AppDefinition{Version: "1.0.0"}},
			Target: AppDefinition{Version: "1.1.0"},
			Diff:   PermissionDiff{Added: []Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}}},
		}}
	e := a.OutcomeEvent()
	want := AuditEvent{At: at.UTC(), Operation: OpFailed, Status: StatusFailed, Actor: "Megan", ActorID: "obj-megan",
		TenantID: "tenant", ScopeKind: ScopeChat, ScopeID: "19:c@thread.v2", AppID: "app-1", App: "Polls", From: "1.0.0",
		To: "1.1.0", Added: a.Upgrade.Diff.Added, ApprovalID: "apv_1",
		Detail: "graph_refused; needs TeamsAppInstallation.ReadWriteForChat.All; Graph 403 Forbidden"}
	if e.Detail != want.Detail || e.Operation != want.Operation || e.ActorID != want.ActorID || e.TenantID != want.TenantID ||
		!e.At.Equal(want.At) || e.At.Location() != time.UTC || e.AppID != want.AppID || len(e.Added) != 1 {
		t.Errorf("event:\n got %+v\nwant %+v", e, want)
	}
	if got := FormatPermissions(e.Added); got != "ChatMessage.Read.Chat (application)" {
		t.Errorf("permissions read %q", got)
	}
}
