package approval_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
)

// A failed approval stored by a release before reasons held an English
// sentence; it still loads, and that sentence is what went wrong.
func TestRecordOfAnEarlierReleaseKeepsItsSentence(t *testing.T) {
	const said = "graph: upgrade app in chat: 403 Forbidden: Graph refused the call"
	var a approval.Approval
	err := json.Unmarshal([]byte(`{"id":"apr_1","status":"failed","problem":"`+said+`",
		"verification":{"problem":"cannot read the grants"}}`), &a)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.WhatWentWrong(); got != (approval.Problem{Text: said}) {
		t.Errorf("what went wrong: %+v", got)
	}
	if got := a.Verification.WhatWentWrong(); got != (approval.Problem{Text: "cannot read the grants"}) {
		t.Errorf("the verification's problem: %+v", got)
	}
	// Once the approval ends again, the old sentence is gone with it.
	again := a.Close(approval.Outcome{Status: approval.StatusFailed, Problem: approval.Problem{Reason: approval.ReasonThrottled, Status: 429}})
	if got := again.WhatWentWrong(); got.Text != "" || got.Reason != approval.ReasonThrottled {
		t.Errorf("after a new failure: %+v", got)
	}
	b, _ := json.Marshal(again)
	var back approval.Approval
	if err := json.Unmarshal(b, &back); err != nil || back.WhatWentWrong() != again.Problem {
		t.Errorf("%s read back as %+v (%v)", b, back.WhatWentWrong(), err)
	}
}

// problemError is an adapter's error that knows what went wrong.
type problemError struct{ p approval.Problem }

func (e problemError) Error() string             { return "graph: 403" }
func (e problemError) Problem() approval.Problem { return e.p }

func TestProblemOfReadsTheChain(t *testing.T) {
	refused := approval.Problem{Reason: approval.ReasonGraphRefused, Status: 403, Permission: "Chat.Read.All"}
	notPublished := approval.MayUpgrade(approval.PendingUpgrade{Installation: approval.Installation{TeamsAppID: "t", DisplayName: "Polls"},
		Target: approval.AppDefinition{Version: "2.0"}}, nil, approval.Installation{Definition: approval.AppDefinition{Version: "1.0"}})
	for _, tc := range []struct {
		err  error
		want approval.Problem
	}{
		{nil, approval.Problem{}},
		{fmt.Errorf("upgrade: %w", problemError{refused}), refused},
		{notPublished, approval.Problem{Reason: approval.ReasonNotPublished}},
		{errors.New("redis: connection refused"), approval.Problem{Reason: approval.ReasonUnexpected}},
	} {
		if got := approval.ProblemOf(tc.err); got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.err, got, tc.want)
		}
	}
}
