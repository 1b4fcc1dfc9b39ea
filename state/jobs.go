package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

// QueueOptions configures a Queue. Zero values take the documented defaults.
type QueueOptions struct {
	// Consumer names this replica in the consumer group. Required, unique
	// per replica (host name and process id do).
	Consumer string
	// Shards is how many streams jobs are spread over, by tenant, so that
	// on Redis Cluster no one stream takes every job. Default 4. Every
	// replica must use the same number.
	Shards int
	// ReclaimAfter is how long a job may stay unacknowledged before
	// another replica takes it over (its replica died). Default 1 min.
	ReclaimAfter time.Duration
	// Block is how long Next waits for a job when every shard is empty.
	// Default 500 ms.
	Block time.Duration
	// TendEvery is how often this process moves a shard's due delayed jobs
	// onto its stream and reclaims a dead replica's jobs there. Doing both
	// on every read made idle workers cost Redis about 100 round trips a
	// second per replica. Default 1 s (a quarter of ReclaimAfter if that
	// is less): a delayed job runs at most that late.
	TendEvery time.Duration
}

// Queue is the bot's scan jobs on Redis Streams with one consumer group:
// every replica consumes, XAUTOCLAIM hands a dead replica's jobs to another,
// and a delayed job waits in a sorted set beside its stream.
type Queue struct {
	s    *Store
	opts QueueOptions

	mu      sync.Mutex
	next    int
	created map[int]bool
	tended  map[int]time.Time // when each shard was last tended by this process
}

var _ bot.JobQueue = (*Queue)(nil)

const jobGroup = "scanners"

// Queue returns the job queue on this store's Redis.
func (s *Store) Queue(opts QueueOptions) (*Queue, error) {
	if opts.Consumer == "" {
		return nil, errors.New("state: QueueOptions.Consumer is required")
	}
	if opts.Shards <= 0 {
		opts.Shards = 4
	}
	if opts.ReclaimAfter <= 0 {
		opts.ReclaimAfter = time.Minute
	}
	if opts.Block <= 0 {
		opts.Block = 500 * time.Millisecond
	}
	if opts.TendEvery <= 0 {
		opts.TendEvery = min(time.Second, opts.ReclaimAfter/4)
	}
	return &Queue{s: s, opts: opts, created: map[int]bool{}, tended: map[int]time.Time{}}, nil
}

// A shard's stream and its delayed set share a hash tag: one script moves
// jobs between them.
func (q *Queue) streamKey(shard int) string {
	return q.s.opts.Prefix + "jobs:{jobs-" + strconv.Itoa(shard) + "}"
}
func (q *Queue) delayedKey(shard int) string {
	return q.s.opts.Prefix + "jobs-delayed:{jobs-" + strconv.Itoa(shard) + "}"
}

func (q *Queue) shardOf(tenantID string) int {
	h := fnv.New32a()
	h.Write([]byte(tenantID))
	return int(h.Sum32() % uint32(q.opts.Shards))
}

// maxStreamLength caps a stream if nobody consumes (approximate trimming).
const maxStreamLength = 1_000_000

// Enqueue adds a job.
func (q *Queue) Enqueue(ctx context.Context, j bot.ScanJob) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("state: encode job: %w", err)
	}
	err = q.s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(q.shardOf(j.TenantID)), MaxLen: maxStreamLength, Approx: true,
		Values: map[string]any{"job": b}}).Err()
	if err != nil {
		return unavailable("enqueue job", err)
	}
	return nil
}

// ensureGroup creates the consumer group once per shard; BUSYGROUP means
// another replica did.
func (q *Queue) ensureGroup(ctx context.Context, shard int) error {
	q.mu.Lock()
	done := q.created[shard]
	q.mu.Unlock()
	if done {
		return nil
	}
	err := q.s.rdb.XGroupCreateMkStream(ctx, q.streamKey(shard), jobGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return unavailable("create consumer group", err)
	}
	q.mu.Lock()
	q.created[shard] = true
	q.mu.Unlock()
	return nil
}

// Next returns one job: a due delayed one moved back onto its stream, one
// abandoned by a dead consumer, or a new one. It looks at every shard
// without waiting, starting with the next in turn (so no tenant's shard
// starves another's), and only when all were empty waits up to Block on
// one of them: a sweep of one tenant fills one shard, and its jobs must not
// wait for the others' timeouts.
func (q *Queue) Next(ctx context.Context) (bot.Job, bool, error) {
	q.mu.Lock()
	start := q.next
	q.next = (q.next + 1) % q.opts.Shards
	q.mu.Unlock()
	for i := range q.opts.Shards {
		shard := (start + i) % q.opts.Shards
		block := time.Duration(-1) // XREADGROUP without BLOCK
		if i == q.opts.Shards-1 {
			block = q.opts.Block
		}
		j, ok, err := q.nextIn(ctx, shard, block)
		if err != nil || ok {
			return j, ok, err
		}
	}
	return bot.Job{}, false, nil
}

// nextIn returns one job of a shard, waiting up to block for a new one
// (negative: not at all).
func (q *Queue) nextIn(ctx context.Context, shard int, block time.Duration) (bot.Job, bool, error) {
	if err := q.ensureGroup(ctx, shard); err != nil {
		return bot.Job{}, false, err
	}
	stream := q.streamKey(shard)
	var msgs []redis.XMessage
	if q.tendDue(shard) {
		if err := promoteScript.Run(ctx, q.s.rdb, []string{q.delayedKey(shard), stream},
			time.Now().UnixMilli(), 100, maxStreamLength).Err(); err != nil && !errors.Is(err, redis.Nil) {
			q.untend(shard)
			return bot.Job{}, false, unavailable("promote delayed jobs", err)
		}
		var err error
		msgs, _, err = q.s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: jobGroup,
			Consumer: q.opts.Consumer, MinIdle: q.opts.ReclaimAfter, Start: "0-0", Count: 1}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			q.untend(shard)
			return bot.Job{}, false, unavailable("reclaim jobs", err)
		}
		if len(msgs) > 0 {
			q.untend(shard) // there may be more to reclaim: look again at once
		}
	}
	if len(msgs) == 0 {
		streams, err := q.s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: jobGroup, Consumer: q.opts.Consumer,
			Streams: []string{stream, ">"}, Count: 1, Block: block}).Result()
		if errors.Is(err, redis.Nil) || ctx.Err() != nil {
			return bot.Job{}, false, nil
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOGROUP") { // the stream was deleted
				q.mu.Lock()
				delete(q.created, shard)
				q.mu.Unlock()
			}
			return bot.Job{}, false, unavailable("read jobs", err)
		}
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
	}
	if len(msgs) == 0 {
		return bot.Job{}, false, nil
	}
	m := msgs[0]
	var j bot.ScanJob
	raw, _ := m.Values["job"].(string)
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		// Nothing can run it: drop it rather than hand it out forever.
		q.ack(ctx, shard, m.ID)
		return bot.Job{}, false, fmt.Errorf("state: job %s is not a scan job: %w", m.ID, err)
	}
	return bot.Job{ID: strconv.Itoa(shard) + "/" + m.ID, ScanJob: j}, true, nil
}

// tendDue reports whether the shard is due to be tended, and if so marks
// it tended now.
func (q *Queue) tendDue(shard int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if now.Sub(q.tended[shard]) < q.opts.TendEvery {
		return false
	}
	q.tended[shard] = now
	return true
}

// untend makes the shard due again (tending failed, or found work).
func (q *Queue) untend(shard int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.tended, shard)
}

// promoteScript moves due delayed jobs onto the stream.
var promoteScript = redis.NewScript(`
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job', string.sub(m, string.find(m, '|', 1, true) + 1))
  redis.call('ZREM', KEYS[1], m)
end
return #due`)

func (q *Queue) parseID(id string) (int, string, error) {
	s, mid, ok := strings.Cut(id, "/")
	shard, err := strconv.Atoi(s)
	if !ok || err != nil || shard < 0 || shard >= q.opts.Shards {
		return 0, "", fmt.Errorf("state: %q is not a job id", id)
	}
	return shard, mid, nil
}

func (q *Queue) ack(ctx context.Context, shard int, id string) error {
	_, err := q.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.streamKey(shard), jobGroup, id)
		p.XDel(ctx, q.streamKey(shard), id)
		return nil
	})
	if err != nil {
		return unavailable("acknowledge job", err)
	}
	return nil
}

// Ack marks a job done and removes it.
func (q *Queue) Ack(ctx context.Context, j bot.Job) error {
	shard, id, err := q.parseID(j.ID)
	if err != nil {
		return err
	}
	return q.ack(ctx, shard, id)
}

// Delay acknowledges this run and schedules the job again at at, in one
// script: the job is never both gone and not scheduled.
func (q *Queue) Delay(ctx context.Context, j bot.Job, at time.Time) error {
	shard, id, err := q.parseID(j.ID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(j.ScanJob)
	if err != nil {
		return fmt.Errorf("state: encode job: %w", err)
	}
	// The member is unique per run: the same job delayed twice is two
	// entries, never one overwriting the other.
	member := id + "|" + string(b)
	err = delayScript.Run(ctx, q.s.rdb, []string{q.delayedKey(shard), q.streamKey(shard)},
		at.UnixMilli(), member, jobGroup, id).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("delay job", err)
	}
	return nil
}

var delayScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
return 1`)

// QueueStats is what the queue holds, for metrics.
type QueueStats struct {
	Length    int64         // waiting, running and delayed jobs
	OldestAge time.Duration // of the oldest job on a stream (0: none)
}

// Stats sums every shard.
func (q *Queue) Stats(ctx context.Context) (QueueStats, error) {
	var st QueueStats
	now := time.Now()
	for shard := range q.opts.Shards {
		n, err := q.s.rdb.XLen(ctx, q.streamKey(shard)).Result()
		if err != nil {
			return st, unavailable("queue length", err)
		}
		d, err := q.s.rdb.ZCard(ctx, q.delayedKey(shard)).Result()
		if err != nil {
			return st, unavailable("queue length", err)
		}
		st.Length += n + d
		first, err := q.s.rdb.XRangeN(ctx, q.streamKey(shard), "-", "+", 1).Result()
		if err != nil {
			return st, unavailable("oldest job", err)
		}
		if len(first) > 0 {
			ms, _ := strconv.ParseInt(strings.SplitN(first[0].ID, "-", 2)[0], 10, 64)
			st.OldestAge = max(st.OldestAge, now.Sub(time.UnixMilli(ms)))
		}
	}
	return st, nil
}
