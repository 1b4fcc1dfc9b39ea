package cards

import (
	"strconv"
	"strings"
)

// Problem is what went wrong with an upgrade, a check or a verification:
// a reason and its facts, worded here in the reader's language.
type Problem struct {
	// Reason is one of the Reason constants; any other is worded as
	// ReasonUnexpected.
	Reason string
	// Permission is the Graph application permission an admin grants
	// (ReasonGraphRefused).
	Permission string
	// Status, GraphCode and GraphMessage are Graph's answer, shown as a
	// technical detail in Microsoft's words; Status 0 is no answer.
	Status       int
	GraphCode    string
	GraphMessage string
	// InstalledVersion is what the installation still runs
	// (ReasonInterrupted).
	InstalledVersion string
	// Text is a sentence recorded before reasons existed, shown as it is.
	Text string
}

// Reasons the cards word.
const (
	ReasonGraphRefused      = "graph_refused"
	ReasonTokenRefused      = "token_refused"
	ReasonCredentialRefused = "credential_refused"
	ReasonEntraUnavailable  = "entra_unavailable"
	ReasonGraphUnavailable  = "graph_unavailable"
	ReasonThrottled         = "throttled"
	ReasonNotFound          = "not_found"
	ReasonConsentNotAllowed = "consent_not_allowed"
	ReasonConsentPolicy     = "consent_policy"
	ReasonAppBlocked        = "app_blocked"
	ReasonNotPublished      = "not_published"
	ReasonInterrupted       = "interrupted"
	ReasonBotRemoved        = "bot_removed"
	ReasonAppUninstalled    = "app_uninstalled"
	ReasonUnexpected        = "unexpected"
)

// reasons maps each reason to who can end it: an admin (a permission, the
// credential, the tenant's consent settings), anyone who can approve (try
// again later, Retry, check), or nobody (the approval was closed).
var reasons = map[string]string{
	ReasonGraphRefused: "admin", ReasonTokenRefused: "admin", ReasonCredentialRefused: "admin",
	ReasonConsentNotAllowed: "admin", ReasonConsentPolicy: "admin", ReasonAppBlocked: "admin",
	ReasonEntraUnavailable: "you", ReasonGraphUnavailable: "you",
	ReasonThrottled: "you", ReasonNotFound: "you", ReasonNotPublished: "admin", ReasonInterrupted: "you",
	ReasonBotRemoved: "", ReasonAppUninstalled: "", ReasonUnexpected: "you",
}

// maxGraphMessage bounds Graph's message on a card: it is a detail, and a
// card must stay under Teams' message size.
const maxGraphMessage = 300

// worded is a problem in words: what went wrong, what can be done about it
// (with its label), and Graph's own answer.
type worded struct {
	what, fix, detail string
}

func (t tr) word(p Problem) worded {
	if p.Reason == "" && p.Text != "" {
		return worded{what: literal(p.Text)}
	}
	reason := p.Reason
	who, known := reasons[reason]
	if !known {
		reason, who = ReasonUnexpected, reasons[ReasonUnexpected]
	}
	data := map[string]any{"Permission": p.Permission, "Installed": p.InstalledVersion}
	w := worded{what: t.T("Problem_"+reason, data)}
	fix := "Fix_" + reason
	if reason == ReasonGraphRefused && p.Permission != "" {
		fix += "_Permission"
	}
	switch who {
	case "admin":
		w.fix = t.T("WhatAdminCanDo", map[string]any{"Action": t.T(fix, data)})
	case "you":
		w.fix = t.T("WhatYouCanDo", map[string]any{"Action": t.T(fix, data)})
	}
	if p.Status != 0 || p.GraphCode != "" || p.GraphMessage != "" {
		w.detail = t.T("GraphSaid", map[string]any{"Detail": graphAnswer(p)})
	}
	return w
}

// graphAnswer is Graph's answer as Graph gave it: "403 Forbidden: Missing
// scope permissions on the request."
func graphAnswer(p Problem) string {
	var parts []string
	if p.Status != 0 {
		parts = append(parts, strconv.Itoa(p.Status))
	}
	if p.GraphCode != "" {
		parts = append(parts, p.GraphCode)
	}
	s := strings.Join(parts, " ")
	if msg := strings.Join(strings.Fields(p.GraphMessage), " "); msg != "" {
		if r := []rune(msg); len(r) > maxGraphMessage {
			msg = string(r[:maxGraphMessage]) + "…"
		}
		if s != "" {
			s += ": "
		}
		s += msg
	}
	return s
}

// problemElements shows a problem on a card: what went wrong, what can be
// done, and Graph's answer in small print.
func (t tr) problemElements(p Problem) []Element {
	w := t.word(p)
	out := []Element{text(t.T("WhatWentWrong", map[string]any{"Problem": w.what}))}
	if w.fix != "" {
		out = append(out, text(w.fix))
	}
	if w.detail != "" {
		out = append(out, subtle(w.detail))
	}
	return out
}

// problemLine is a problem in one line, for a sentence the bot sends
// without a card.
func (t tr) problemLine(p Problem) string {
	w := t.word(p)
	return strings.Join(strings.Fields(strings.Join([]string{w.what, w.fix, w.detail}, " ")), " ")
}
