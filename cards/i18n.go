package cards

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"github.com/pelletier/go-toml/v2"
	"golang.org/x/text/language"
)

//go:embed locales/*.toml rsc.json
var files embed.FS

// Locales are the languages the cards speak; the first is the fallback.
var Locales = []string{"en", "zh-CN"}

// Cards builds cards. It holds the message catalogue and the RSC permission
// catalogue; it is immutable and safe for concurrent use.
type Cards struct {
	messages map[string]map[string]*i18n.Message // locale → id → message
	perms    map[string]permissionInfo
}

type permissionInfo struct {
	Value   string
	Scope   string
	Risk    string
	Meaning map[string]string
}

// New loads the embedded message files and permission catalogue.
func New() (*Cards, error) {
	messages := map[string]map[string]*i18n.Message{}
	for _, l := range Locales {
		name := "active." + l + ".toml"
		raw, err := files.ReadFile("locales/" + name)
		if err != nil {
			return nil, err
		}
		mf, err := i18n.ParseMessageFileBytes(raw, name, map[string]i18n.UnmarshalFunc{"toml": toml.Unmarshal})
		if err != nil {
			return nil, fmt.Errorf("cards: messages for %s: %w", l, err)
		}
		messages[l] = map[string]*i18n.Message{}
		for _, m := range mf.Messages {
			messages[l][m.ID] = m
		}
	}
	perms, err := loadPermissions()
	if err != nil {
		return nil, err
	}
	return &Cards{messages: messages, perms: perms}, nil
}

func loadPermissions() (map[string]permissionInfo, error) {
	raw, err := files.ReadFile("rsc.json")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Permissions []map[string]string `json:"permissions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("cards: rsc.json: %w", err)
	}
	perms := make(map[string]permissionInfo, len(doc.Permissions))
	for _, p := range doc.Permissions {
		info := permissionInfo{Value: p["value"], Scope: p["scope"], Risk: p["risk"], Meaning: map[string]string{}}
		for _, l := range Locales {
			if p[l] == "" {
				return nil, fmt.Errorf("cards: rsc.json: %s has no %s meaning", info.Value, l)
			}
			info.Meaning[l] = p[l]
		}
		perms[strings.ToLower(info.Value)] = info
	}
	return perms, nil
}

// tr is the message catalogue in one language.
//
// Messages come from go-i18n message files, parsed by go-i18n, but are not
// run through its Localizer: that executes them with text/template, whose
// reflective method lookup makes the Go linker keep every exported method
// of every type in the program, and with msgraph-sdk-go that took the
// binary from 27 MB to 118 MB. The messages only need {{.Name}}
// placeholders and English/Chinese plurals, filled here.
type tr struct {
	c    *Cards
	lang string // the matched locale, one of Locales
}

// matcher matches a Teams locale ("en-US", "zh-cn", …) to one of Locales.
var matcher = language.NewMatcher(localeTags())

func localeTags() []language.Tag {
	tags := make([]language.Tag, len(Locales))
	for i, l := range Locales {
		tags[i] = language.MustParse(l)
	}
	return tags
}

// tr picks the catalogue for a Teams locale. Only a confident match counts:
// the matcher offers Simplified Chinese to Traditional Chinese readers
// (zh-TW, zh-HK) with low confidence, and they get English rather than a
// script they did not choose.
func (c *Cards) tr(locale string) tr {
	_, i, confidence := matcher.Match(language.Make(locale))
	if confidence < language.High {
		i = 0
	}
	return tr{c: c, lang: Locales[i]}
}

func (t tr) message(id string) *i18n.Message {
	if m, ok := t.c.messages[t.lang][id]; ok {
		return m
	}
	if m, ok := t.c.messages[Locales[0]][id]; ok {
		return m
	}
	// A missing message is a programming error, caught by the tests that
	// build every card.
	panic(fmt.Sprintf("cards: no message %q", id))
}

// T returns message id filled with data.
func (t tr) T(id string, data ...map[string]any) string {
	var d map[string]any
	if len(data) > 0 {
		d = data[0]
	}
	return fill(id, t.message(id).Other, d)
}

// N returns the plural form of id for count; data gets .Count too.
func (t tr) N(id string, count int, data map[string]any) string {
	m := t.message(id)
	form := m.Other
	// CLDR: English has "one" for exactly 1; Chinese has only "other".
	if t.lang == "en" && count == 1 && m.One != "" {
		form = m.One
	}
	d := map[string]any{"Count": count}
	for k, v := range data {
		d[k] = v
	}
	return fill(id, form, d)
}

// fill replaces the {{.Name}} placeholders of a message with data, in one
// pass, so text in the data (such as Teams' {{DATE(…)}}) is left alone, and
// no value becomes a link (see literal).
func fill(id, s string, data map[string]any) string {
	var out strings.Builder
	for {
		i := strings.Index(s, "{{.")
		if i < 0 {
			out.WriteString(s)
			return out.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			panic(fmt.Sprintf("cards: message %q has an unclosed placeholder", id))
		}
		name := s[i+3 : i+j]
		v, ok := data[name]
		if !ok {
			// A programming error, caught by the tests that build every card.
			panic(fmt.Sprintf("cards: message %q needs .%s", id, name))
		}
		out.WriteString(s[:i])
		out.WriteString(literal(fmt.Sprint(v)))
		s = s[i+j+2:]
	}
}

// cardLang is the card's "lang": the ISO 639-1 code its date functions use.
func (t tr) cardLang() string { return strings.SplitN(t.lang, "-", 2)[0] }

// Sentence is a plain message the bot sends without a card.
type Sentence string

const (
	SentenceNoScope       Sentence = "NoScope"       // the conversation has no Graph scope
	SentenceNoGraph       Sentence = "NoGraph"       // Graph access is not configured
	SentenceUnknownAction Sentence = "UnknownAction" // a card refers to an approval that is gone, or has a button no longer known
	SentenceCheckFailed   Sentence = "CheckFailed"   // {{.Problem}}: a Problem
	SentenceActionFailed  Sentence = "ActionFailed"  // {{.Problem}}: a Problem; a click did not go through
	SentenceCheckRecent   Sentence = "CheckRecent"   // {{.Seconds}}: until check reads Graph again
)

// Sentence returns a sentence in the locale's language; data fills it. A
// Problem in data is worded in one line, with what can be done about it.
func (c *Cards) Sentence(locale string, s Sentence, data map[string]any) string {
	t := c.tr(locale)
	filled := make(map[string]any, len(data))
	for k, v := range data {
		if p, ok := v.(Problem); ok {
			v = t.problemLine(p)
		}
		filled[k] = v
	}
	return t.T(string(s), filled)
}
