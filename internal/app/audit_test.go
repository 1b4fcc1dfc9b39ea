package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// audit runs `upgradebot audit args…` against the harness's Redis and
// returns its exit code and what it printed.
func (h *harness) audit(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), append([]string{"audit"}, args...), func(k string) string { return h.env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// After a check in four chats, and an approve, a reject, a click on an
// expired request and an approve Graph refuses, the tenant's audit trail
// lists exactly those events, each request's in order, with who did them;
// as JSON lines and as CSV under its fixed header.
func TestAuditListsExactlyTheEventsOfARun(t *testing.T) {
	h := newHarness(t)
	chats := seedChats(h, 4)
	h.tune = func(d *deps) { quick(d); d.noBackground = true }
	h.graph.Fail(fakegraph.Fault{Method: http.MethodPost, Path: chats[3] + "/installedApps", Status: http.StatusForbidden,
		Code: "Forbidden", Message: "Missing scope permissions on the request.", Times: 100})
	h.start(t)
	for i, chat := range chats {
		if code := h.post(t, h.in(h.message(fmt.Sprint("17000000001", i), "check"), chat)); code != http.StatusOK {
			t.Fatalf("check in %s: %d", chat, code)
		}
	}
	posted := cards(t, h.connector.WaitCalls(t, len(chats)))
	click := func(i int, verb string) {
		t.Helper()
		c := posted[chats[i]]
		a := h.approve(fmt.Sprint("17000000002", i), chats[i], c[1], c[0])
		a["value"].(map[string]any)["action"].(map[string]any)["verb"] = verb
		if code := h.post(t, a); code != http.StatusOK {
			t.Fatalf("%s in %s: %d", verb, chats[i], code)
		}
	}
	click(0, "approve")
	click(1, "reject")
	// The third request's time is up when it is clicked.
	if _, err := storeOf(t, h).Approvals().Transition(context.Background(), posted[chats[2]][0],
		[]approval.Status{approval.StatusPending}, func(a *approval.Approval) { a.ExpiresAt = time.Now().Add(-time.Minute) }); err != nil {
		t.Fatal(err)
	}
	click(2, "approve")
	click(3, "approve")

	want := map[string][]approval.Operation{
		posted[chats[0]][0]: {approval.OpRequested, approval.OpApproved, approval.OpUpgraded},
		posted[chats[1]][0]: {approval.OpRequested, approval.OpRejected},
		posted[chats[2]][0]: {approval.OpRequested, approval.OpExpired},
		posted[chats[3]][0]: {approval.OpRequested, approval.OpApproved, approval.OpFailed},
	}
	var events []approval.AuditEvent
	var last string
	eventually(t, 20*time.Second, "the audit trail lists the run's ten events", func() bool {
		code, out, errOut := h.audit("--tenant", testTenant, "--format", "json")
		last = fmt.Sprintf("exit %d: %s%s", code, out, errOut)
		events = nil
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var e approval.AuditEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("a line that is not an event: %q: %v", sc.Text(), err)
			}
			events = append(events, e)
		}
		return code == 0 && len(events) >= 10
	}, &last)
	got := map[string][]approval.Operation{}
	for _, e := range events {
		got[e.ApprovalID] = append(got[e.ApprovalID], e.Operation)
		if e.TenantID != testTenant || e.ScopeKind != approval.ScopeChat || !slices.Contains(chats, e.ScopeID) ||
			e.App != "Polls" || e.AppID == "" || e.From != "1.0.0" || e.To != "1.1.0" || len(e.Added) != 1 || e.At.IsZero() {
			t.Errorf("event %+v does not say what, where and to which", e)
		}
		bot := e.Operation == approval.OpExpired
		if bot != (e.ActorID == "") || (!bot && (e.ActorID != faultOwner || e.Actor != "Megan")) {
			t.Errorf("%s by %q (%s)", e.Operation, e.Actor, e.ActorID)
		}
		if e.Operation == approval.OpFailed && !strings.Contains(e.Detail, "403") {
			t.Errorf("the failure's detail is %q", e.Detail)
		}
	}
	if len(events) != 10 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("trail:\n got %v (%d events)\nwant %v", got, len(events), want)
	}

	// Without --tenant: every tenant's trail, as CSV.
	code, out, errOut := h.audit()
	if code != 0 {
		t.Fatalf("audit: exit %d: %s", code, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 11 || strings.Join(rows[0], ",") != strings.Join(AuditHeader, ",") {
		t.Fatalf("csv (%v):\n%s", err, out)
	}
	for i, r := range rows[1:] {
		if at, err := time.Parse(time.RFC3339, r[0]); err != nil || !at.Equal(events[i].At.Truncate(time.Millisecond)) ||
			r[1] != string(events[i].Operation) || r[13] != events[i].ApprovalID || r[11] != "ChatMessage.Read.Chat (application)" {
			t.Errorf("csv line %d: %v, want %+v", i+1, r, events[i])
		}
	}
	// Nothing happened in the last millisecond.
	if code, out, _ := h.audit("--since", "1ms", "--format", "json"); code != 0 || out != "" {
		t.Errorf("--since 1ms: exit %d, %q", code, out)
	}
}

// trailOf waits until the tenant's trail, as `audit --format json` prints
// it, lists want (each event "Operation" or "Operation by <actor>" with
// its detail's first words), and fails naming what it lists instead.
func (h *harness) trailOf(t *testing.T, within time.Duration, want ...string) []approval.AuditEvent {
	t.Helper()
	var events []approval.AuditEvent
	var got []string
	last := ""
	eventually(t, within, fmt.Sprintf("the audit trail to list %v", want), func() bool {
		_, out, _ := h.audit("--tenant", testTenant, "--format", "json")
		events, got = nil, nil
		for line := range strings.Lines(out) {
			var e approval.AuditEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			s := string(e.Operation)
			if e.Actor != "" {
				s += " by " + e.Actor
			}
			if e.Detail != "" {
				s += ": " + e.Detail
			}
			events, got = append(events, e), append(got, s)
		}
		last = strings.Join(got, " | ")
		return slices.Equal(got, want)
	}, &last)
	return events
}

// What the bot does unprompted is in the trail too, by nobody: the card a
// scan posts, its reminder and its expiry.
func TestAuditHasTheReminderAndExpiryOfAScannedRequest(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"], h.env["BOT_REMIND_AFTER"], h.env["BOT_APPROVAL_TTL"] = "1s", "1s", "5s"
	seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	h.trailOf(t, 20*time.Second, "AppUpgradeRequested", "AppUpgradeReminded", "AppUpgradeRequestExpired")
}

// An upgrade through Teams' own Update button closes the request, and the
// trail says so.
func TestAuditHasAnUpgradeOutsideTheBot(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	iid := seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	h.trailOf(t, 10*time.Second, "AppUpgradeRequested")
	h.graph.UpgradeOutside(fakegraph.Chat, chatID, iid, "1.1.0")
	h.trailOf(t, 10*time.Second, "AppUpgradeRequested", "AppUpgradedOutsideBot")
}

// An upgrade whose consent did not take is an event after the upgrade,
// naming the permission.
func TestAuditHasConsentMissingAfterAnUpgrade(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	h.graph.DropGrant(fakegraph.Chat, chatID, "ChatMessage.Read.Chat")
	h.start(t)
	h.post(t, h.message("1700000000600", "check"))
	approvalID := approvalIDOf(t, h.connector.WaitCalls(t, 1)[0])
	h.post(t, h.event("invoke", "1700000000601", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}}))
	events := h.trailOf(t, 30*time.Second, "AppUpgradeRequested by Megan", "AppUpgradeApproved by Megan Bowen", "AppUpgraded by Megan Bowen",
		"AppUpgradeConsentMissing: not in force: ChatMessage.Read.Chat (application)")
	if e := events[3]; e.ApprovalID != approvalID || e.To != "1.1.0" || e.ActorID != "" {
		t.Errorf("consent missing: %+v", e)
	}
}

func TestAuditBadFlagsExit2NamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--format", "xml"}, nil, "-format"},
		{[]string{"--since", "a month"}, nil, "-since"},
		{[]string{"--since", "-1h"}, nil, "-since"},
		{[]string{"--tenant"}, nil, "-tenant"},
		{[]string{"--color"}, nil, "-color"},
		{[]string{"tenant"}, nil, `"tenant"`},
		{nil, map[string]string{}, "REDIS_URL"},
		{nil, map[string]string{"REDIS_URL": "mysql://x"}, "REDIS_URL"},
	} {
		env := tc.env
		if env == nil {
			env = map[string]string{"REDIS_URL": redisURL()}
		}
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"audit"}, tc.args...), func(k string) string { return env[k] }, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("audit %v: exit %d, %q; want 2 naming %s", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// README documents every operation and the CSV header as `audit` prints it.
func TestReadmeDocumentsTheAuditTrail(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, op := range approval.Operations() {
		if !strings.Contains(readme, "| `"+string(op)+"` |") {
			t.Errorf("README's audit trail table lacks %s", op)
		}
	}
	if !strings.Contains(readme, "\n"+strings.Join(AuditHeader, ",")+"\n") {
		t.Errorf("README does not show the CSV header %s", strings.Join(AuditHeader, ","))
	}
}
