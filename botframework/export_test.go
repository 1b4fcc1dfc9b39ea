package botframework

import (
	"encoding/json"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// ForgetTokens empties the verified-token cache, so that a benchmark can
// measure a token's first verification.
func (v *Verifier) ForgetTokens() { clear(v.tokens.entries) }

// EncodeReply is the body of a reply as the connector encodes it.
func EncodeReply(ref approval.ConversationRef, replyToID string, m bot.Message) ([]byte, error) {
	return encodeBody(newOutgoing(ref, replyToID, m))
}

// MarshalReply is the body of a reply as json.Marshal encodes it.
func MarshalReply(ref approval.ConversationRef, replyToID string, m bot.Message) ([]byte, error) {
	return json.Marshal(newOutgoing(ref, replyToID, m))
}
