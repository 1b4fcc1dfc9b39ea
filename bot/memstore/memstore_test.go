package memstore_test

import (
	"testing"

	"github.com/upgradeapprovals/bot/bot/memstore"
	"github.com/upgradeapprovals/bot/bot/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memstore.New() })
}
