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
	bundle *i18n.Bundle
	perms  map[string]permissionInfo
}

type permissionInfo struct {
	Value   string            `json:"value"`
	Scope   string            `json:"scope"`
	Risk    string            `json:"risk"`
	Meaning map[string]string `json:"-"`
}

// New loads the embedded message files and permission catalogue.
func New() (*Cards, error) {
	b := i18n.NewBundle(language.English)
	b.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	for _, l := range Locales {
		if _, err := b.LoadMessageFileFS(files, "locales/active."+l+".toml"); err != nil {
			return nil, fmt.Errorf("cards: messages for %s: %w", l, err)
		}
	}
	perms, err := loadPermissions()
	if err != nil {
		return nil, err
	}
	return &Cards{bundle: b, perms: perms}, nil
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
type tr struct {
	l    *i18n.Localizer
	lang string // the matched locale, one of Locales
}

// tr picks the catalogue for a Teams locale ("en-US", "zh-cn", …). Chinese
// in Simplified script gets zh-CN; Traditional Chinese (zh-TW, zh-HK) gets
// English rather than a script its readers did not choose.
func (c *Cards) tr(locale string) tr {
	tag := language.Make(locale)
	lang := "en"
	base, _ := tag.Base()
	script, _ := tag.Script() // inferred when not explicit: zh-TW → Hant
	if base.String() == "zh" && script.String() == "Hans" {
		lang = "zh-CN"
	}
	return tr{l: i18n.NewLocalizer(c.bundle, lang), lang: lang}
}

// T returns message id filled with data. A missing message is a
// programming error, caught by the tests that build every card.
func (t tr) T(id string, data ...any) string {
	cfg := &i18n.LocalizeConfig{MessageID: id}
	if len(data) > 0 {
		cfg.TemplateData = data[0]
	}
	s, err := t.l.Localize(cfg)
	if err != nil {
		panic(fmt.Sprintf("cards: message %q: %v", id, err))
	}
	return s
}

// N returns the plural form of id for count; data gets .Count too.
func (t tr) N(id string, count int, data map[string]any) string {
	if data == nil {
		data = map[string]any{}
	}
	data["Count"] = count
	s, err := t.l.Localize(&i18n.LocalizeConfig{MessageID: id, PluralCount: count, TemplateData: data})
	if err != nil {
		panic(fmt.Sprintf("cards: message %q: %v", id, err))
	}
	return s
}

// cardLang is the card's "lang": the ISO 639-1 code its date functions use.
func (t tr) cardLang() string { return strings.SplitN(t.lang, "-", 2)[0] }
