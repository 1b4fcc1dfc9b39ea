package botframework

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// ServiceURLTrust remembers, per conversation, the service URL that arrived
// on an authenticated activity. The connector sends the bot's token to no
// other URL.
type ServiceURLTrust interface {
	TrustServiceURL(ctx context.Context, conversationID, serviceURL string) error
	IsTrustedServiceURL(ctx context.Context, conversationID, serviceURL string) (bool, error)
}

// ServiceURLOptions configures ServiceURLs.
type ServiceURLOptions struct {
	// Hosts are the connector hosts of the cloud (Cloud.ServiceURLHosts):
	// an https service URL on one of them is trusted without any record.
	Hosts []string
	// Records keeps, per conversation, a service URL on another host that
	// arrived on an authenticated activity. Required.
	Records ServiceURLTrust
	// CacheSize bounds the conversations remembered in process. Default 10000.
	CacheSize int
	// CacheTTL is how long a record is believed without asking Records
	// again. Default 10 min.
	CacheTTL time.Duration
}

// ServiceURLs decides where the bot's token may be sent. Teams' own
// connector hosts cost nothing; any other service URL is trusted only for
// the conversation it arrived in, so no single Redis key sits on every
// request's path (on a Redis Cluster one master would own it), and what is
// remembered stays bounded by the conversations' TTL.
type ServiceURLs struct {
	hosts   map[string]bool
	records ServiceURLTrust
	written *expirable.LRU[string, string] // conversation → service URL recorded by this replica
	trusted *expirable.LRU[string, string] // conversation → service URL read back as trusted
}

// NewServiceURLs returns a ServiceURLs.
func NewServiceURLs(opts ServiceURLOptions) *ServiceURLs {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Minute
	}
	s := &ServiceURLs{hosts: map[string]bool{}, records: opts.Records,
		written: expirable.NewLRU[string, string](opts.CacheSize, nil, opts.CacheTTL),
		trusted: expirable.NewLRU[string, string](opts.CacheSize, nil, opts.CacheTTL)}
	for _, h := range opts.Hosts {
		s.hosts[strings.ToLower(h)] = true
	}
	return s
}

// TrustServiceURL records serviceURL for the conversation of an
// authenticated activity. Teams' own hosts need no record, and a replica
// writes a conversation's record at most once per CacheTTL.
func (s *ServiceURLs) TrustServiceURL(ctx context.Context, conversationID, serviceURL string) error {
	known, err := s.check(serviceURL)
	if err != nil || known {
		return err
	}
	conv := approval.BaseConversation(conversationID) // every thread of a channel shares its connector
	if u, ok := s.written.Get(conv); ok && u == serviceURL {
		return nil
	}
	if err := s.records.TrustServiceURL(ctx, conv, serviceURL); err != nil {
		return err
	}
	s.written.Add(conv, serviceURL)
	s.trusted.Add(conv, serviceURL)
	return nil
}

// IsTrustedServiceURL reports whether the bot may send its token to
// serviceURL to write to the conversation.
func (s *ServiceURLs) IsTrustedServiceURL(ctx context.Context, conversationID, serviceURL string) (bool, error) {
	known, err := s.check(serviceURL)
	if err != nil {
		return false, nil
	}
	if known {
		return true, nil
	}
	conv := approval.BaseConversation(conversationID)
	if u, ok := s.trusted.Get(conv); ok && u == serviceURL {
		return true, nil
	}
	ok, err := s.records.IsTrustedServiceURL(ctx, conv, serviceURL)
	if err != nil || !ok {
		return false, err
	}
	s.trusted.Add(conv, serviceURL)
	return true, nil
}

// check refuses a service URL the token must never go to (plain http
// beyond loopback), and reports whether it is on one of the cloud's hosts.
func (s *ServiceURLs) check(serviceURL string) (bool, error) {
	if err := CheckSecureURL(serviceURL); err != nil {
		return false, bot.Errorf(bot.CodeForbidden, "botframework: service URL: %w", err)
	}
	u, _ := url.Parse(serviceURL)
	return u.Scheme == "https" && u.Port() == "" && s.hosts[strings.ToLower(u.Hostname())], nil
}
