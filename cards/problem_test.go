package cards_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/upgradeapprovals/bot/cards"
)

var everyReason = []string{cards.ReasonGraphRefused, cards.ReasonTokenRefused, cards.ReasonCredentialRefused,
	cards.ReasonEntraUnavailable, cards.ReasonGraphUnavailable, cards.ReasonThrottled, cards.ReasonNotFound,
	cards.ReasonConsentNotAllowed, cards.ReasonConsentPolicy, cards.ReasonAppBlocked, cards.ReasonNotPublished, cards.ReasonInterrupted, cards.ReasonBotRemoved,
	cards.ReasonAppUninstalled, cards.ReasonUnexpected}

// failedWith is the failed card of Polls in locale for p.
func failedWith(c *cards.Cards, locale string, p cards.Problem) cards.Card {
	return c.Outcome(cards.Outcome{Locale: locale, Kind: cards.OutcomeFailed, ApprovalID: "apr_1", App: polls, Problem: p})
}

func cardTexts(t *testing.T, card cards.Card) []string {
	t.Helper()
	b, err := json.Marshal(card)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return textBlocks(v)
}

func hasHan(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.Is(unicode.Han, r) })
}

// Each reason reads as its own sentence in each language, in that
// language, naming the facts it has (the permission to grant, the version
// still installed), and never as Go's error text.
func TestEveryReasonIsWordedInEveryLanguage(t *testing.T) {
	c := newCards(t)
	const perm = "TeamsAppInstallation.ReadWriteAndConsentForChat.All"
	for _, locale := range cards.Locales {
		said := map[string]string{}
		for _, r := range everyReason {
			p := cards.Problem{Reason: r, Permission: perm, InstalledVersion: "0.9.7"}
			texts := strings.Join(cardTexts(t, failedWith(c, locale, p)), "\n")
			line := c.Sentence(locale, cards.SentenceCheckFailed, map[string]any{"Problem": p})
			for _, s := range []string{texts, line} {
				if strings.Contains(s, "graph:") || strings.Contains(s, "_") || strings.Contains(s, "{{.") {
					t.Errorf("%s %s: %q", locale, r, s)
				}
				if hasHan(s) != (locale == "zh-CN") {
					t.Errorf("%s %s is not in its language: %q", locale, r, s)
				}
			}
			if strings.Contains(line, "\n") {
				t.Errorf("%s %s: the sentence is more than one line: %q", locale, r, line)
			}
			if r == cards.ReasonGraphRefused && (!strings.Contains(texts, perm) || !strings.Contains(line, perm)) {
				t.Errorf("%s: a refused call does not name the permission to grant:\n%s\n%s", locale, texts, line)
			}
			if r == cards.ReasonInterrupted && !strings.Contains(texts, "0.9.7") {
				t.Errorf("%s: an interrupted upgrade does not name the version still installed:\n%s", locale, texts)
			}
			for other, s := range said {
				if s == line {
					t.Errorf("%s: %s and %s read the same: %q", locale, r, other, s)
				}
			}
			said[r] = line
		}
		unknown := c.Sentence(locale, cards.SentenceCheckFailed, map[string]any{"Problem": cards.Problem{Reason: "martian"}})
		if unknown != said[cards.ReasonUnexpected] {
			t.Errorf("%s: an unknown reason reads %q, not as an unexpected one", locale, unknown)
		}
	}
}

// Graph's answer is a small-print detail in Microsoft's words; the sentence
// above it is the reader's language.
func TestGraphsAnswerIsADetail(t *testing.T) {
	c := newCards(t)
	card := failedWith(c, "zh-CN", cards.Problem{Reason: cards.ReasonThrottled, Status: 429, GraphCode: "TooManyRequests",
		GraphMessage: "Too many\nrequests " + strings.Repeat("x", 400)})
	var detail *cards.Element
	for i, e := range card.Body[0].Items {
		if e.IsSubtle {
			detail = &card.Body[0].Items[i]
		}
	}
	if detail == nil || !strings.Contains(detail.Text, "429 TooManyRequests: Too many requests x") || strings.Contains(detail.Text, "\n") ||
		utf8.RuneCountInString(detail.Text) > 400 {
		t.Fatalf("Graph's answer shown as %+v", detail)
	}
	if !hasHan(card.Body[0].Items[1].Text) {
		t.Errorf("what went wrong: %q", card.Body[0].Items[1].Text)
	}
}

// A failure an earlier release recorded as a sentence is shown as it was.
func TestEarlierSentenceIsShownAsItIs(t *testing.T) {
	c := newCards(t)
	const said = "graph: upgrade app in chat: 404 Not Found: the chat is gone"
	for _, locale := range cards.Locales {
		texts := cardTexts(t, failedWith(c, locale, cards.Problem{Text: said}))
		if !strings.Contains(strings.Join(texts, "\n"), said) {
			t.Errorf("%s: %q", locale, texts)
		}
	}
}

// Markdown bold (**…**) closes only where CommonMark lets it: a closing
// "**" right after punctuation must be followed by a space or punctuation,
// which full-width colons in Chinese often are not. No card text may show
// literal asterisks.
func TestBoldMarkupIsAlwaysClosed(t *testing.T) {
	c := newCards(t)
	var texts []string
	for _, n := range everyCard(t) {
		for _, s := range cardTexts(t, n.Card) {
			texts = append(texts, n.Name+": "+s)
		}
	}
	for _, l := range cards.Locales {
		for _, r := range everyReason {
			p := cards.Problem{Reason: r, Permission: "Chat.Read.All", InstalledVersion: "1.0", Status: 403, GraphCode: "Forbidden"}
			for _, s := range cardTexts(t, failedWith(c, l, p)) {
				texts = append(texts, l+" "+r+": "+s)
			}
			texts = append(texts, c.Sentence(l, cards.SentenceCheckFailed, map[string]any{"Problem": p}))
		}
		for _, s := range []cards.Sentence{cards.SentenceNoScope, cards.SentenceNoGraph, cards.SentenceUnknownAction} {
			texts = append(texts, c.Sentence(l, s, nil))
		}
	}
	for _, s := range texts {
		if bad := unclosedBold(s); bad >= 0 {
			t.Errorf("literal ** at byte %d of %q", bad, s)
		}
	}
	// The rule itself.
	for s, want := range map[string]int{
		"**出了什么问题：**graph": 0, "**出了什么问题**：graph": -1, "• **高风险：** 读取": -1, "**a** → **b**": -1, "a ** b": 2,
	} {
		if got := unclosedBold(s); (got >= 0) != (want >= 0) {
			t.Errorf("unclosedBold(%q) = %d, want %d", s, got, want)
		}
	}
}

// unclosedBold returns the byte offset of a "**" that CommonMark would show
// as asterisks (it can neither open nor close, or opens and is never
// closed), or -1.
func unclosedBold(s string) int {
	var open []int
	for i := 0; i < len(s); {
		if s[i] != '*' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '*' {
			j++
		}
		if j-i != 2 {
			i = j
			continue
		}
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[j:])
		if i == 0 {
			before = ' '
		}
		if j == len(s) {
			after = ' '
		}
		space := func(r rune) bool { return unicode.IsSpace(r) }
		punct := func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }
		left := !space(after) && (!punct(after) || space(before) || punct(before))
		right := !space(before) && (!punct(before) || space(after) || punct(after))
		switch {
		case right && len(open) > 0:
			open = open[:len(open)-1]
		case left:
			open = append(open, i)
		default:
			return i
		}
		i = j
	}
	if len(open) > 0 {
		return open[0]
	}
	return -1
}
