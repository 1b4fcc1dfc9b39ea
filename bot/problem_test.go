package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/internal/logtest"
)

// graphFailure is a failed Graph call as graph/ returns one: a coded error
// whose text, for the log, is the whole technical story, with what went
// wrong in its chain.
func graphFailure(code bot.Code, text string, p approval.Problem) error {
	return &bot.Error{Code: code, Message: text, Err: graphAnswer{p}}
}

type graphAnswer struct{ p approval.Problem }

func (a graphAnswer) Error() string {
	return fmt.Sprintf("%d %s: %s", a.p.Status, a.p.GraphCode, a.p.GraphMessage)
}
func (a graphAnswer) Problem() approval.Problem { return a.p }

// refusedByGraph is Graph's 403 to a call that permission grants.
func refusedByGraph(permission string) error {
	return graphFailure(bot.CodeForbidden, "graph: upgrade Polls in chat: 403 Forbidden (Forbidden: Missing scope permissions on the request.): "+
		"Graph refused the call; an admin must grant the application permission "+permission+" with admin consent",
		approval.Problem{Reason: approval.ReasonGraphRefused, Status: 403, GraphCode: "Forbidden",
			GraphMessage: "Missing scope permissions on the request.", Permission: permission})
}

// goChain is text only Go's error chain or the log's hint shows.
var goChain = []string{"graph:", "Graph refused the call", "an admin must grant", "403 Forbidden ("}

// A Chinese-speaking approver whose upgrade Graph refused reads, in
// Chinese, why and which permission an admin grants; the log keeps the
// technical story.
func TestFailedUpgradeInChineseSaysWhyAndWhichPermission(t *testing.T) {
	const perm = "TeamsAppInstallation.ReadWriteAndConsentForChat.All"
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	var logs logtest.Buffer
	f.bot = f.withOptions(func(o *bot.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	f.graph.upgrade = func(approval.Installation) error { return refusedByGraph(perm) }
	f.say("check")
	a := f.onlyApproval()

	click := f.activity(map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1", "locale": "zh-CN",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": a.ID}}}})
	resp, err := f.bot.Handle(context.Background(), click)
	if err != nil {
		t.Fatal(err)
	}
	card := answer(resp)
	for _, want := range []string{"失败", "出了什么问题", "Microsoft Graph 拒绝了机器人的调用", "管理员可以怎么做", perm, `"verb":"retry"`} {
		if !strings.Contains(card, want) {
			t.Errorf("the failed card lacks %q: %s", want, card)
		}
	}
	for _, leak := range goChain {
		if strings.Contains(card, leak) {
			t.Errorf("the failed card shows %q: %s", leak, card)
		}
	}
	if got := f.onlyApproval().Problem; got.Reason != approval.ReasonGraphRefused || got.Permission != perm || got.Status != 403 {
		t.Errorf("recorded problem %+v", got)
	}
	f.drain()
	if !strings.Contains(logs.String(), "an admin must grant the application permission "+perm) {
		t.Errorf("the log lacks the technical text: %s", logs.String())
	}
}

// installedFails is Graph failing to list the apps installed anywhere.
type installedFails struct {
	*fakeGraph
	err error
}

func (g installedFails) Installed(context.Context, approval.Scope) ([]approval.Installation, error) {
	return nil, g.err
}

// A check Graph refused says why in the asker's language, in one line.
func TestCheckFailedSaysWhyInTheAskersLanguage(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.bot = f.withOptions(func(o *bot.Options) {
		o.Installations = installedFails{f.graph, graphFailure(bot.CodeForbidden,
			"graph: list apps in chat: the bot cannot get a Microsoft Graph token for this tenant: check MicrosoftAppId",
			approval.Problem{Reason: approval.ReasonCredentialRefused})}
	})
	if _, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "text": "检查", "locale": "zh-CN"})); err != nil {
		t.Fatal(err)
	}
	if len(f.conn.replies) != 1 {
		t.Fatalf("replies %+v", f.conn.replies)
	}
	text := f.conn.replies[0].Text
	if !strings.HasPrefix(text, "无法查找此处的应用") || !strings.Contains(text, "无法获取此租户的 Microsoft Graph 令牌") ||
		!strings.Contains(text, "MicrosoftAppId") || strings.Contains(text, "\n") {
		t.Errorf("check replied %q", text)
	}
	for _, leak := range append(goChain, "cannot get") {
		if strings.Contains(text, leak) {
			t.Errorf("check replied %q, showing %q", text, leak)
		}
	}
}

// Every reason the domain knows is worded as itself, not as "something
// unexpected".
func TestEveryReasonHasItsOwnWords(t *testing.T) {
	said := map[string]approval.Reason{}
	for _, r := range approval.Reasons() {
		f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
		f.bot = f.withOptions(func(o *bot.Options) {
			o.Installations = installedFails{f.graph, graphFailure(bot.CodeUnavailable, "graph: failed", approval.Problem{Reason: r, Permission: "Chat.Read.All"})}
		})
		f.say("check")
		text := f.conn.replies[0].Text
		if other, ok := said[text]; ok {
			t.Errorf("%s reads as %s: %q", r, other, text)
		}
		said[text] = r
	}
}

// A failed upgrade recorded by a release before reasons still shows the
// sentence it recorded.
func TestFailureRecordedByAnEarlierReleaseShowsItsSentence(t *testing.T) {
	const said = "graph: upgrade Polls in chat: 404 Not Found: the chat, team, user or installation is gone"
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	b, _ := json.Marshal(a)
	var old map[string]any
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	old["status"], old["problem"] = "failed", said
	b, _ = json.Marshal(old)
	var stored approval.Approval
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	f.state.Put(stored)

	f.say("check")
	if len(f.conn.replies) != 2 || !strings.Contains(cardText(t, f.conn.replies[1]), said) {
		t.Errorf("check showed %+v", f.conn.replies)
	}
}
