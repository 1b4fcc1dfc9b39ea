package botframework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// ActivityHandler handles an authenticated activity.
type ActivityHandler interface {
	Handle(ctx context.Context, a *bot.Activity) (*bot.InvokeResponse, error)
}

// ServerOptions configures the HTTP endpoint.
type ServerOptions struct {
	// Bot handles activities. Required.
	Bot ActivityHandler
	// Verifier authenticates requests. Nil turns authentication off; main
	// allows that only on a loopback listener, with LoopbackOnly.
	Verifier *Verifier
	// LoopbackOnly refuses (403) every request whose Host is not
	// loopback (IsLoopback: localhost, 127.0.0.0/8 or [::1], any port), or
	// that carries an Origin other than those. A loopback listener alone does not keep web pages
	// out: a page the user opens can rebind its own name to 127.0.0.1 and
	// drive a bot that verifies no token. Set it whenever Verifier is nil.
	LoopbackOnly bool
	// Trust records the service URLs of authenticated activities. Required.
	Trust ServiceURLTrust
	// Ready reports whether dependencies answer (Redis); used by /readyz.
	Ready func(ctx context.Context) error
	// Gatherer serves /metrics. Nil serves no /metrics.
	Gatherer prometheus.Gatherer
	// Metrics may be nil.
	Metrics *Metrics
	// MaxBodyBytes limits a request body. Default 256 KiB.
	MaxBodyBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewServer returns the bot's HTTP handler: POST /api/messages, GET /healthz,
// GET /readyz and GET /metrics.
func NewServer(opts ServerOptions) (http.Handler, error) {
	if opts.Bot == nil || opts.Trust == nil {
		return nil, errors.New("botframework: ServerOptions.Bot and Trust are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 256 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &server{opts: opts}
	r := gin.New()
	r.Use(gin.Recovery())
	if opts.LoopbackOnly {
		r.Use(s.loopbackOnly)
	}
	r.POST("/api/messages", s.messageChain()...)
	// The M365 Agents Playground probes the endpoint with HEAD before it starts.
	r.HEAD("/api/messages", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	r.GET("/readyz", s.readyz)
	if opts.Gatherer != nil {
		h := promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})
		r.GET("/metrics", gin.WrapH(h))
	}
	return r, nil
}

type server struct {
	opts ServerOptions
}

// messageChain is POST /api/messages, one step per check. Each step
// refuses what it can decide and stops the chain with its status; the last
// one alone calls the bot. The bearer token is checked before the body is
// read, so an anonymous caller costs no more than a header parse.
func (s *server) messageChain() []gin.HandlerFunc {
	chain := make([]gin.HandlerFunc, 0, 7)
	if s.opts.Verifier != nil {
		chain = append(chain, s.verifyToken)
	}
	chain = append(chain, s.jsonOnly, s.readActivity, s.teamsOnly)
	if s.opts.Verifier != nil {
		chain = append(chain, s.verifyActivity)
	}
	return append(chain, s.trustServiceURL, s.handle)
}

// What one step of the chain hands to the next, in gin's per-request keys.
const (
	claimsKey   = "botframework.claims"   // *Claims, set by verifyToken
	activityKey = "botframework.activity" // *bot.Activity, set by readActivity
)

func activityOf(c *gin.Context) *bot.Activity { return c.MustGet(activityKey).(*bot.Activity) }

// verifyToken checks the Authorization header: 401, or 503 while the
// signing keys cannot be had.
func (s *server) verifyToken(c *gin.Context) {
	claims, err := s.opts.Verifier.VerifyToken(c.Request.Context(), c.GetHeader("Authorization"))
	if err != nil {
		s.reject(c, err)
		return
	}
	c.Set(claimsKey, claims)
}

// jsonOnly refuses (415) anything but JSON before the body is read: with
// auth off (the local sandbox) a web page could otherwise post a form or
// text/plain to the bot from the user's browser. Channels post JSON.
func (s *server) jsonOnly(c *gin.Context) {
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		s.opts.Metrics.observeActivity("", "unsupported_media_type")
		c.AbortWithStatus(http.StatusUnsupportedMediaType)
		return
	}
}

// readActivity decodes the body, at most MaxBodyBytes of it (413), into
// the activity; value and channelData stay raw for whoever reads them. A
// body that is not an activity is 400.
func (s *server) readActivity(c *gin.Context) {
	body, err := readBody(http.MaxBytesReader(c.Writer, c.Request.Body, s.opts.MaxBodyBytes), c.Request.ContentLength, s.opts.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.opts.Metrics.observeActivity("", "too_large")
			c.AbortWithStatus(http.StatusRequestEntityTooLarge)
			return
		}
		c.AbortWithStatus(http.StatusBadRequest)
		return
	}
	a := new(bot.Activity)
	if err := json.Unmarshal(body, a); err != nil || a.Type == "" {
		s.opts.Metrics.observeActivity("", "malformed")
		c.AbortWithStatus(http.StatusBadRequest)
		return
	}
	c.Set(activityKey, a)
}

// teamsOnly refuses (403) every channel but Microsoft Teams. Only Teams
// vouches for who is talking: on Web Chat, Direct Line and the Emulator
// the client picks its own from.aadObjectId, tenant and channelData, so it
// could claim to be a chat owner. Local runs are no exception: the Agents
// Playground sends msteams.
func (s *server) teamsOnly(c *gin.Context) {
	if a := activityOf(c); a.ChannelID != ChannelMSTeams {
		s.refuse(c, http.StatusForbidden, authError(ReasonChannel, fmt.Errorf("channel %q is not msteams", a.ChannelID)))
		return
	}
}

// verifyActivity checks what binds the token to the activity (endorsed
// channel, serviceurl claim, tenant): 401.
func (s *server) verifyActivity(c *gin.Context) {
	if err := s.opts.Verifier.VerifyActivity(c.MustGet(claimsKey).(*Claims), activityOf(c)); err != nil {
		s.reject(c, err)
		return
	}
}

// trustServiceURL records the activity's service URL, which the checks
// before it vouched for, as the one the connector may answer this
// conversation through.
func (s *server) trustServiceURL(c *gin.Context) {
	a := activityOf(c)
	if a.ServiceURL == "" {
		return
	}
	if err := s.opts.Trust.TrustServiceURL(c.Request.Context(), a.Conversation.ID, a.ServiceURL); err != nil {
		s.fail(c, a, err)
		return
	}
	// A channel's activity vouches for its team's connector too: a team's
	// unprompted cards may go to its General channel, whose conversation
	// is the team's.
	if t := a.Teams().Team; t != nil && t.ID != "" && a.Conversation.ConversationType == "channel" &&
		t.ID != approval.BaseConversation(a.Conversation.ID) {
		if err := s.opts.Trust.TrustServiceURL(c.Request.Context(), t.ID, a.ServiceURL); err != nil {
			s.fail(c, a, err)
			return
		}
	}
}

// handle gives the activity to the bot and answers. An invoke's answer
// travels in the same response, always with 200: a refusal's status is
// inside the body, where Teams shows it.
func (s *server) handle(c *gin.Context) {
	a := activityOf(c)
	resp, err := s.opts.Bot.Handle(c.Request.Context(), a)
	if err != nil {
		s.fail(c, a, err)
		return
	}
	s.opts.Metrics.observeActivity(string(a.Type), "ok")
	if body := InvokeBody(resp); string(a.Type) == "invoke" && body != nil {
		c.JSON(http.StatusOK, body)
		return
	}
	c.Status(http.StatusOK)
}

// loopbackOnly refuses requests that name another host (DNS rebinding) or
// come from a web page served elsewhere.
func (s *server) loopbackOnly(c *gin.Context) {
	if !IsLoopback(c.Request.Host) {
		s.refuse(c, http.StatusForbidden, authError(ReasonLoopback, fmt.Errorf("host %q is not loopback", c.Request.Host)))
		return
	}
	if origins, ok := c.Request.Header["Origin"]; ok {
		u, err := url.Parse(strings.Join(origins, ","))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !IsLoopback(u.Host) {
			s.refuse(c, http.StatusForbidden, authError(ReasonLoopback, fmt.Errorf("origin %q is not loopback", strings.Join(origins, ","))))
			return
		}
	}
}

func (s *server) reject(c *gin.Context, err error) {
	status := http.StatusUnauthorized
	var ae *AuthError
	if errors.As(err, &ae) && ae.Reason == ReasonKeysUnavailable {
		// Our fault, not the caller's: 503 makes Teams deliver it again.
		status = http.StatusServiceUnavailable
	}
	s.refuse(c, status, err)
}

func (s *server) refuse(c *gin.Context, status int, err error) {
	reason := ReasonMalformed
	var ae *AuthError
	if errors.As(err, &ae) {
		reason = ae.Reason
	}
	s.opts.Metrics.observeAuthRejection(reason)
	// Anything on the internet can post without a token: that is noise,
	// counted by the metric. A token that fails a check is worth a warning
	// (often a misconfigured app id, tenant or cloud).
	level := slog.LevelWarn
	if reason == ReasonMissingHeader || reason == ReasonNotBearer || reason == ReasonMalformed {
		level = slog.LevelInfo
	}
	s.opts.Logger.Log(c.Request.Context(), level, "request refused", "reason", reason, "err", err)
	c.AbortWithStatus(status)
}

// readBody reads a request body. Channels send its length, so it is read
// into one buffer of that size rather than one grown (and copied) a few
// times over; a body without a length, or longer than the limit, is read
// through to the limit's error.
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength < 0 || contentLength > limit {
		return io.ReadAll(r)
	}
	body := make([]byte, contentLength)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// fail answers a failed activity. The status tells the channel whether a
// retry can help: 5xx for what may pass (Redis, the connector), 4xx otherwise.
func (s *server) fail(c *gin.Context, a *bot.Activity, err error) {
	status := statusOf(bot.ErrorCode(err))
	s.opts.Metrics.observeActivity(string(a.Type), "error")
	s.opts.Logger.ErrorContext(c.Request.Context(), "activity failed",
		"type", a.Type, "name", a.Name, "activity_id", a.ID, "status", status, "err", err)
	c.AbortWithStatus(status)
}

func (s *server) readyz(c *gin.Context) {
	if s.opts.Verifier != nil && !s.opts.Verifier.Ready() {
		c.String(http.StatusServiceUnavailable, "signing keys not loaded")
		return
	}
	if s.opts.Ready != nil {
		// A probe that hangs on a frozen Redis helps nobody: bound it.
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			// The probe is unauthenticated: the detail (hosts, addresses)
			// goes to the log only.
			s.opts.Logger.WarnContext(ctx, "not ready", "err", err)
			c.String(http.StatusServiceUnavailable, "not ready: Redis does not answer")
			return
		}
	}
	c.String(http.StatusOK, "ready")
}
