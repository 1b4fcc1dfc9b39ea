package state

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
)

// Each tenant's audit trail is a Redis Stream, "trail:{tenant}", appended to
// with XADD and trimmed by id (MINID ~, now less AuditRetention) as it is
// appended to; an idle trail expires AuditRetention after its last event.
// The set "trail:tenants" names the tenants that have one.
//
// An entry has the same fields, in the same order, every time (empty when
// there is nothing to say), so Redis keeps their names once per node of the
// stream rather than once per event.

func (c *conn) trailKey(tenant string) string { return c.opts.Prefix + "trail:{" + tenant + "}" }
func (c *conn) trailTenantsKey() string       { return c.opts.Prefix + "trail:tenants" }

// trailVersion versions an entry of a trail.
const trailVersion = "1"

// appendTrail queues e's append to its tenant's trail on p.
func (c *conn) appendTrail(ctx context.Context, p redis.Pipeliner, e approval.AuditEvent) (*redis.StringCmd, error) {
	added, err := encodePermissions(e.Added)
	if err != nil {
		return nil, err
	}
	removed, err := encodePermissions(e.Removed)
	if err != nil {
		return nil, err
	}
	key := c.trailKey(e.TenantID)
	minID := strconv.FormatInt(time.Now().Add(-c.opts.AuditRetention).UnixMilli(), 10)
	add := p.XAdd(ctx, &redis.XAddArgs{Stream: key, MinID: minID, Approx: true, Values: []string{
		"v", trailVersion,
		"at", strconv.FormatInt(e.At.UnixMilli(), 10),
		"op", string(e.Operation),
		"status", string(e.Status),
		"actor", e.Actor,
		"actorId", e.ActorID,
		"scopeKind", string(e.ScopeKind),
		"scopeId", e.ScopeID,
		"appId", e.AppID,
		"app", e.App,
		"from", e.From,
		"to", e.To,
		"added", added,
		"removed", removed,
		"approval", e.ApprovalID,
		"detail", e.Detail,
	}})
	p.PExpire(ctx, key, c.opts.AuditRetention)
	p.SAdd(ctx, c.trailTenantsKey(), e.TenantID)
	return add, nil
}

func encodePermissions(ps []approval.Permission) (string, error) {
	if len(ps) == 0 {
		return "", nil
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return "", fmt.Errorf("state: encode audit event: %w", err)
	}
	return string(b), nil
}

func decodeTrailEntry(tenant string, m redis.XMessage) (approval.AuditEvent, error) {
	f := func(k string) string { s, _ := m.Values[k].(string); return s }
	ms, err := strconv.ParseInt(f("at"), 10, 64)
	if err != nil {
		return approval.AuditEvent{}, fmt.Errorf("state: decode audit event %s: %w", m.ID, err)
	}
	e := approval.AuditEvent{At: time.UnixMilli(ms).UTC(), Operation: approval.Operation(f("op")),
		Status: approval.Status(f("status")), Actor: f("actor"), ActorID: f("actorId"), TenantID: tenant,
		ScopeKind: approval.ScopeKind(f("scopeKind")), ScopeID: f("scopeId"), AppID: f("appId"), App: f("app"),
		From: f("from"), To: f("to"), ApprovalID: f("approval"), Detail: f("detail")}
	for _, p := range []struct {
		field string
		into  *[]approval.Permission
	}{{"added", &e.Added}, {"removed", &e.Removed}} {
		if s := f(p.field); s != "" {
			if err := json.Unmarshal([]byte(s), p.into); err != nil {
				return approval.AuditEvent{}, fmt.Errorf("state: decode audit event %s: %w", m.ID, err)
			}
		}
	}
	return e, nil
}

// AppendAudit appends e to the trail of e.TenantID (bot.AuditTrail), in one
// round trip.
func (s *ApprovalLists) AppendAudit(ctx context.Context, e approval.AuditEvent) error {
	var add *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		var err error
		add, err = s.appendTrail(ctx, p, e)
		return err
	})
	if add == nil {
		return err // it did not encode
	}
	if err != nil {
		return unavailable("append audit", err)
	}
	return nil
}

// Trail reads the tenants' audit trails, for `upgradebot audit`.
type Trail struct{ *conn }

// Trail returns the audit trails.
func (s *Store) Trail() *Trail { return &Trail{conn: s.conn} }

// Tenants lists the tenants that have a trail, sorted.
func (t *Trail) Tenants(ctx context.Context) ([]string, error) {
	ids, err := t.rdb.SMembers(ctx, t.trailTenantsKey()).Result()
	if err != nil {
		return nil, unavailable("read audit tenants", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// TrailPage is how many events Read asks Redis for at a time.
const TrailPage = 1000

// Read calls each with every event of tenant's trail appended since since,
// oldest first, reading TrailPage at a time (XRANGE … COUNT): a trail of
// any length is never held in memory whole. An error from each stops it
// and is returned.
func (t *Trail) Read(ctx context.Context, tenant string, since time.Time, each func(approval.AuditEvent) error) error {
	key := t.trailKey(tenant)
	start := strconv.FormatInt(since.UnixMilli(), 10)
	for {
		page, err := t.rdb.XRangeN(ctx, key, start, "+", TrailPage).Result()
		if err != nil {
			return unavailable("read audit", err)
		}
		for _, m := range page {
			e, err := decodeTrailEntry(tenant, m)
			if err != nil {
				return err
			}
			if err := each(e); err != nil {
				return err
			}
		}
		if len(page) < TrailPage {
			return nil
		}
		start = "(" + page[len(page)-1].ID
	}
}
