package consul

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// An intention-match answer that does not list the destination, or lists
// a null intention, is an error, not "no intentions": read that way it
// would drop every deny intention. A listed destination with null or []
// is a valid "none".
func TestIntentionsMalformedAnswer(t *testing.T) {
	tests := []struct {
		body   string
		errHas string // "" for a valid answer
		n      int
	}{
		{`{"web":[{"SourceName":"api","DestinationName":"web","Action":"deny"}]}`, "", 1},
		{`{"web":null}`, "", 0},
		{`{"web":[]}`, "", 0},
		{`null`, "does not list", 0},
		{`{}`, "does not list", 0},
		{`{"other":[]}`, "does not list", 0},
		{`{"web":[null]}`, "intention 0 is null", 0},
		{`{"web":{}}`, "cannot unmarshal object", 0},
		{`[]`, "cannot unmarshal array", 0},
		{`{"web":[{"SourceName":`, "unexpected EOF", 0},
	}
	for _, tt := range tests {
		s := &script{then: body("5", tt.body)}
		list, _, err := Intentions(s.client(t, false), "web")(&api.QueryOptions{})
		switch {
		case tt.errHas == "" && (err != nil || len(list) != tt.n):
			t.Errorf("%s: %d intentions, %v; want %d", tt.body, len(list), err, tt.n)
		case tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)):
			t.Errorf("%s: error %v, want one with %q", tt.body, err, tt.errHas)
		}
	}
}

// A 200 with "null" for the proxy registration is an error, not a crash.
func TestProxyRegistrationNull(t *testing.T) {
	s := &script{then: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-ContentHash", "abc")
		w.Write([]byte("null"))
	}}
	if _, _, err := ProxyRegistration(s.client(t, false), "web-sidecar-proxy")(&api.QueryOptions{}); err == nil ||
		!strings.Contains(err.Error(), "malformed answer") {
		t.Fatalf("err = %v, want a malformed answer", err)
	}
}

// Against a real agent: the intention-match answer lists the destination
// even when no intention applies (so the malformed-answer rule does not
// reject Consul's own answers), a deny intention is returned, and a client
// from NewClient runs a watch whose first answer for a service with no
// instance is the empty snapshot.
func TestAgainstConsul(t *testing.T) {
	a := consultest.Start(t)
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = a.HTTPAddr, ""
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	list, meta, err := Intentions(client, "web")(&api.QueryOptions{})
	if err != nil || len(list) != 0 || meta.LastIndex == 0 {
		t.Fatalf("no intentions: %v, %v, meta %+v", list, err, meta)
	}
	if _, _, err := client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "web",
		Sources: []*api.SourceIntention{{Name: "api", Action: api.IntentionActionDeny}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	list, _, err = Intentions(client, "web")(&api.QueryOptions{})
	if err != nil || len(list) != 1 || list[0].SourceName != "api" || list[0].Action != api.IntentionActionDeny {
		t.Fatalf("after a deny intention: %+v, %v", list, err)
	}

	snap, meta, err := ConnectEndpoints(client, "absent", "", testTD)(&api.QueryOptions{})
	if err != nil || snap == nil || len(snap.Endpoints) != 0 || meta.LastIndex == 0 {
		t.Fatalf("absent service: %+v, %+v, %v", snap, meta, err)
	}
}
