package approval

import "errors"

// Reason is what went wrong with an upgrade, a check or a verification, as
// a fact: the cards word it, with what an admin can do, in the reader's
// language.
type Reason string

const (
	// ReasonGraphRefused: Graph answered 403. Problem.Permission names the
	// application permission that grants the call, when the bot knows it.
	ReasonGraphRefused Reason = "graph_refused"
	// ReasonTokenRefused: Graph refused the bot's token (401).
	ReasonTokenRefused Reason = "token_refused"
	// ReasonCredentialRefused: Microsoft Entra ID refused the bot's
	// credential for the tenant (a wrong or expired secret, an unknown
	// app, no consent in the tenant), or the credential cannot be used.
	ReasonCredentialRefused Reason = "credential_refused"
	// ReasonEntraUnavailable: Microsoft Entra ID was unreachable or failing,
	// so the bot had no token.
	ReasonEntraUnavailable Reason = "entra_unavailable"
	// ReasonGraphUnavailable: Graph was unreachable or answered 5xx.
	ReasonGraphUnavailable Reason = "graph_unavailable"
	// ReasonThrottled: Graph answered 429 longer than the bot waits.
	ReasonThrottled Reason = "throttled"
	// ReasonNotFound: Graph answered 404: the chat, team, user or
	// installation is gone, or the catalog app was re-uploaded under a new id.
	ReasonNotFound Reason = "not_found"
	// ReasonConsentNotAllowed: Graph answered 412: the tenant does not let
	// resource-specific consent be granted here.
	ReasonConsentNotAllowed Reason = "consent_not_allowed"
	// ReasonConsentPolicy: the tenant's consent policy, as the bot read
	// it, does not let this scope's approvers consent to the upgrade's
	// resource-specific permissions: an admin must allow it.
	ReasonConsentPolicy Reason = "consent_policy"
	// ReasonAppBlocked: Graph answered 403 that the tenant admin blocked
	// the app.
	ReasonAppBlocked Reason = "app_blocked"
	// ReasonNotPublished: the catalog no longer publishes the app.
	ReasonNotPublished Reason = "not_published"
	// ReasonInterrupted: the upgrade was interrupted before Graph confirmed
	// it, and the installation still runs Problem.InstalledVersion.
	ReasonInterrupted Reason = "interrupted"
	// ReasonBotRemoved: the approval was closed because the bot was removed
	// from the conversation.
	ReasonBotRemoved Reason = "bot_removed"
	// ReasonAppUninstalled: the approval was closed because the app is no
	// longer installed there.
	ReasonAppUninstalled Reason = "app_uninstalled"
	// ReasonUnexpected: anything else (Graph answered 400 or 409, the bot
	// failed); the bot's log has the details.
	ReasonUnexpected Reason = "unexpected"
)

// Reasons lists every reason.
func Reasons() []Reason {
	return []Reason{ReasonGraphRefused, ReasonTokenRefused, ReasonCredentialRefused, ReasonEntraUnavailable,
		ReasonGraphUnavailable, ReasonThrottled, ReasonNotFound, ReasonConsentNotAllowed, ReasonConsentPolicy,
		ReasonAppBlocked, ReasonNotPublished, ReasonInterrupted, ReasonBotRemoved, ReasonAppUninstalled, ReasonUnexpected}
}

// Problem is what went wrong: the reason and the facts that go with it.
// It holds no sentence: the cards word it, and the log keeps the
// technical text.
type Problem struct {
	Reason Reason `json:"reason,omitempty"`
	// Permission is the Graph application permission an admin grants to
	// end a ReasonGraphRefused.
	Permission string `json:"permission,omitempty"`
	// Status is Graph's HTTP status; 0 when Graph did not answer.
	Status int `json:"status,omitempty"`
	// GraphCode and GraphMessage are Graph's error.code and error.message:
	// Microsoft's words, for whoever asks Microsoft's support.
	GraphCode    string `json:"graphCode,omitempty"`
	GraphMessage string `json:"graphMessage,omitempty"`
	// InstalledVersion is the version the installation still runs after
	// a ReasonInterrupted.
	InstalledVersion string `json:"installedVersion,omitempty"`
	// ConsentPolicy is the fingerprint of the tenant's consent policy
	// (ConsentFacts.Fingerprint) when the request was found to need an
	// admin.
	ConsentPolicy string `json:"consentPolicy,omitempty"`
	// Text is what a release before reasons recorded instead: an English
	// sentence, shown as it is.
	Text string `json:"text,omitempty"`
}

// NeedsAdmin reports whether the problem is one only an admin's consent
// ends: the consent policy, Graph's refusal of the consent (412), or an app
// the tenant admin blocked.
func (p Problem) NeedsAdmin() bool {
	return p.Reason == ReasonConsentPolicy || p.Reason == ReasonConsentNotAllowed || p.Reason == ReasonAppBlocked
}

// IsZero reports whether nothing went wrong.
func (p Problem) IsZero() bool { return p == Problem{} }

// ProblemOf is what went wrong in err: the Problem an adapter put in its
// chain (an error with a Problem method: Graph's errors have one), a
// catalog that no longer publishes the app, or else ReasonUnexpected. A nil
// err is no problem.
func ProblemOf(err error) Problem {
	if err == nil {
		return Problem{}
	}
	var told interface{ Problem() Problem }
	if errors.As(err, &told) {
		return told.Problem()
	}
	if errors.Is(err, ErrNotPublished) {
		return Problem{Reason: ReasonNotPublished}
	}
	return Problem{Reason: ReasonUnexpected}
}

// WhatWentWrong is why the upgrade failed or the approval was closed: its
// Problem, or for a record an earlier release stored, the sentence it
// stored then.
func (a Approval) WhatWentWrong() Problem {
	if a.Problem.IsZero() && a.ProblemText != "" {
		return Problem{Text: a.ProblemText}
	}
	return a.Problem
}

// WhatWentWrong is why the check itself failed, as Approval.WhatWentWrong.
func (v Verification) WhatWentWrong() Problem {
	if v.Problem.IsZero() && v.ProblemText != "" {
		return Problem{Text: v.ProblemText}
	}
	return v.Problem
}
