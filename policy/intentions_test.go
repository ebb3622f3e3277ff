package policy

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	testTD  = "11111111-2222-3333-4444-555555555555.consul"
	otherTD = "99999999-2222-3333-4444-555555555555.consul"
)

func trustDomain() spiffeid.TrustDomain { return spiffeid.RequireTrustDomainFromString(testTD) }

// svc is the SPIFFE ID of service name in the default partition and namespace.
func svc(name string) spiffeid.ID {
	return spiffeid.RequireFromString("spiffe://" + testTD + "/ns/default/dc/dc1/svc/" + name)
}

// ixn builds an L4 intention src -> dst in the default namespace, as the match
// endpoint returns it on Community Edition. Precedence is left 0 so that
// Compile computes it.
func ixn(src, dst string, action api.IntentionAction) *api.Intention {
	return &api.Intention{
		ID:              src + "-" + dst,
		SourceNS:        "default",
		SourceName:      src,
		DestinationNS:   "default",
		DestinationName: dst,
		SourceType:      api.IntentionSourceConsul,
		Action:          action,
	}
}

func l7(src, dst string) *api.Intention {
	i := ixn(src, dst, "")
	i.Permissions = []*api.IntentionPermission{{
		Action: api.IntentionActionAllow,
		HTTP:   &api.IntentionHTTPPermission{PathPrefix: "/"},
	}}
	return i
}

func with(i *api.Intention, edit func(*api.Intention)) *api.Intention {
	edit(i)
	return i
}

const (
	allow = api.IntentionActionAllow
	deny  = api.IntentionActionDeny
)

func TestAuthorizeL4(t *testing.T) {
	t.Parallel()
	type check struct {
		src       spiffeid.ID
		wantAllow bool
		wantRule  string
	}
	tests := []struct {
		name         string
		list         []*api.Intention
		defaultAllow bool
		checks       []check
	}{
		{
			name:   "no intentions, default deny",
			checks: []check{{svc("api"), false, RuleDefault}},
		},
		{
			name:         "no intentions, default allow",
			defaultAllow: true,
			checks:       []check{{svc("api"), true, RuleDefault}},
		},
		{
			name: "exact allow over wildcard deny",
			list: []*api.Intention{ixn("*", "web", deny), ixn("api", "web", allow)},
			checks: []check{
				{svc("api"), true, "intention web<-api (id api-web)"},
				{svc("db"), false, "intention web<-* (id *-web)"},
			},
		},
		{
			name:         "exact deny over wildcard allow",
			list:         []*api.Intention{ixn("*", "web", allow), ixn("api", "web", deny)},
			defaultAllow: false,
			checks: []check{
				{svc("api"), false, "intention web<-api (id api-web)"},
				{svc("db"), true, "intention web<-* (id *-web)"},
			},
		},
		{
			name: "deny beats lower-precedence allow",
			// *->web (precedence 8) outranks api->* (precedence 6).
			list: []*api.Intention{ixn("api", "*", allow), ixn("*", "web", deny)},
			checks: []check{
				{svc("api"), false, "intention web<-* (id *-web)"},
			},
		},
		{
			name: "exact source on wildcard destination beats wildcard-everything",
			list: []*api.Intention{ixn("*", "*", deny), ixn("api", "*", allow)},
			checks: []check{
				{svc("api"), true, "intention *<-api (id api-*)"},
				{svc("db"), false, "intention *<-* (id *-*)"},
			},
		},
		{
			name:         "wildcard destination deny overrides default allow",
			list:         []*api.Intention{ixn("*", "*", deny)},
			defaultAllow: true,
			checks:       []check{{svc("api"), false, "intention *<-* (id *-*)"}},
		},
		{
			name:         "intentions for other destinations are ignored",
			list:         []*api.Intention{ixn("api", "db", deny)},
			defaultAllow: true,
			checks:       []check{{svc("api"), true, RuleDefault}},
		},
		{
			name:         "L7 intention denies at L4",
			list:         []*api.Intention{l7("api", "web"), ixn("*", "web", allow)},
			defaultAllow: true,
			checks: []check{
				{svc("api"), false, "intention web<-api (id api-web)"},
				{svc("db"), true, "intention web<-* (id *-web)"},
			},
		},
		{
			name:         "L7 intention denies at L4 even with Action allow",
			list:         []*api.Intention{with(l7("api", "web"), func(i *api.Intention) { i.Action = allow })},
			defaultAllow: true,
			checks:       []check{{svc("api"), false, "intention web<-api (id api-web)"}},
		},
		{
			name:         "wrong trust domain",
			list:         []*api.Intention{ixn("*", "*", allow)},
			defaultAllow: true,
			checks: []check{{
				spiffeid.RequireFromString("spiffe://" + otherTD + "/ns/default/dc/dc1/svc/api"),
				false, RuleTrustDomain,
			}},
		},
		{
			name:         "non-Consul SPIFFE IDs",
			list:         []*api.Intention{ixn("*", "*", allow)},
			defaultAllow: true,
			checks: []check{
				{spiffeid.RequireFromString("spiffe://" + testTD + "/agent/client/dc/dc1/id/abc"), false, RuleIdentity},
				{spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/api"), false, RuleIdentity},
				{spiffeid.ID{}, false, RuleIdentity},
			},
		},
		{
			name: "empty namespace is the default namespace",
			list: []*api.Intention{with(ixn("api", "web", allow), func(i *api.Intention) {
				i.SourceNS, i.DestinationNS = "", ""
			})},
			checks: []check{{svc("api"), true, "intention web<-api (id api-web)"}},
		},
		{
			name: "source namespace must match",
			list: []*api.Intention{with(ixn("api", "web", allow), func(i *api.Intention) { i.SourceNS = "team-a" })},
			checks: []check{
				{svc("api"), false, RuleDefault},
				{spiffeid.RequireFromString("spiffe://" + testTD + "/ns/team-a/dc/dc1/svc/api"), true, "intention web<-team-a/api (id api-web)"},
			},
		},
		{
			name: "wildcard source namespace matches any namespace",
			list: []*api.Intention{with(ixn("*", "web", allow), func(i *api.Intention) { i.SourceNS = "*" })},
			checks: []check{
				{svc("api"), true, "intention web<-*/* (id *-web)"},
				{spiffeid.RequireFromString("spiffe://" + testTD + "/ns/team-a/dc/dc9/svc/x"), true, "intention web<-*/* (id *-web)"},
			},
		},
		{
			name: "source partition must match",
			list: []*api.Intention{
				with(ixn("api", "web", allow), func(i *api.Intention) { i.SourcePartition = "finance" }),
				with(ixn("db", "web", allow), func(i *api.Intention) { i.SourcePartition = "default" }),
			},
			checks: []check{
				{svc("api"), false, RuleDefault},
				{spiffeid.RequireFromString("spiffe://" + testTD + "/ap/finance/ns/default/dc/dc1/svc/api"), true, "intention web<-finance/default/api (id api-web)"},
				{svc("db"), true, "intention web<-db (id db-web)"},
				{spiffeid.RequireFromString("spiffe://" + testTD + "/ap/default/ns/default/dc/dc1/svc/db"), true, "intention web<-db (id db-web)"},
				{spiffeid.RequireFromString("spiffe://" + testTD + "/ap/finance/ns/default/dc/dc1/svc/db"), false, RuleDefault},
			},
		},
		{
			name: "peer and sameness-group intentions never match local sources",
			list: []*api.Intention{
				with(ixn("api", "web", deny), func(i *api.Intention) { i.SourcePeer = "east" }),
				with(ixn("db", "web", deny), func(i *api.Intention) { i.SourceSamenessGroup = "group" }),
			},
			defaultAllow: true,
			checks: []check{
				{svc("api"), true, RuleDefault},
				{svc("db"), true, RuleDefault},
			},
		},
		{
			name: "explicit Precedence is used over the computed one",
			list: []*api.Intention{
				// Computed precedence would be 9 and 8; the given values invert that.
				with(ixn("api", "web", allow), func(i *api.Intention) { i.Precedence = 1 }),
				with(ixn("*", "web", deny), func(i *api.Intention) { i.Precedence = 2 }),
			},
			checks: []check{{svc("api"), false, "intention web<-* (id *-web)"}},
		},
		{
			name: "equal precedence: deny before allow",
			list: []*api.Intention{
				ixn("api", "web", allow),
				with(ixn("api", "web", deny), func(i *api.Intention) { i.SourceNS, i.ID = "", "zz" }),
			},
			defaultAllow: true,
			checks:       []check{{svc("api"), false, "intention web<-api (id zz)"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, err := Compile("web", tt.list, CompileOptions{TrustDomain: trustDomain(), DefaultAllow: tt.defaultAllow})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			for _, c := range tt.checks {
				got := in.AuthorizeL4(c.src)
				if got.Allow != c.wantAllow || got.Rule != c.wantRule {
					t.Errorf("AuthorizeL4(%s) = %v, want allow=%v rule %q", c.src, got, c.wantAllow, c.wantRule)
				}
				if got.Reason == "" {
					t.Errorf("AuthorizeL4(%s) = %v: empty Reason", c.src, got)
				}
			}
		})
	}
}

func TestNilIntentionsDenies(t *testing.T) {
	t.Parallel()
	var in *Intentions
	got := in.AuthorizeL4(svc("api"))
	want := Decision{Allow: false, Rule: RuleNotLoaded, Reason: "intentions not loaded"}
	if got != want {
		t.Fatalf("nil.AuthorizeL4 = %v, want %v", got, want)
	}
	if s := in.Summary(); s.Loaded || s.Default != "deny" {
		t.Fatalf("nil.Summary() = %+v, want not loaded, default deny", s)
	}
}

// TestCompileIgnoresInputOrder compiles every shuffle of the same list and
// requires the same evaluation order and decisions.
func TestCompileIgnoresInputOrder(t *testing.T) {
	t.Parallel()
	list := []*api.Intention{
		ixn("*", "*", deny),
		ixn("api", "*", allow),
		ixn("*", "web", allow),
		ixn("api", "web", deny),
		ixn("db", "web", allow),
		l7("cache", "web"),
		with(ixn("*", "web", allow), func(i *api.Intention) { i.SourceNS, i.ID = "*", "any-ns" }),
		with(ixn("api", "web", allow), func(i *api.Intention) { i.SourceNS, i.ID = "team-a", "team-a-api" }),
		ixn("api", "db", allow), // other destination: ignored
	}
	wantOrder := []string{
		"intention web<-api (id api-web)",           // 9, denies sort first
		"intention web<-cache (id cache-web)",       // 9, L7 denies
		"intention web<-db (id db-web)",             // 9
		"intention web<-team-a/api (id team-a-api)", // 9
		"intention web<-* (id *-web)",               // 8
		"intention web<-*/* (id any-ns)",            // 7
		"intention *<-api (id api-*)",               // 6: DestinationNS stays "default"
		"intention *<-* (id *-*)",                   // 5
	}
	sources := []spiffeid.ID{
		svc("api"), svc("db"), svc("cache"), svc("other"),
		spiffeid.RequireFromString("spiffe://" + testTD + "/ns/team-a/dc/dc1/svc/api"),
		spiffeid.RequireFromString("spiffe://" + testTD + "/ns/team-b/dc/dc1/svc/x"),
	}
	opts := CompileOptions{TrustDomain: trustDomain()}
	ref, err := Compile("web", list, opts)
	if err != nil {
		t.Fatal(err)
	}
	refSummary := ref.Summary()
	var gotOrder []string
	for _, r := range refSummary.Rules {
		gotOrder = append(gotOrder, r.Rule)
	}
	if !reflect.DeepEqual(gotOrder, wantOrder) {
		t.Fatalf("evaluation order:\n got %q\nwant %q", gotOrder, wantOrder)
	}
	wantPrec := []int{9, 9, 9, 9, 8, 7, 6, 5}
	for i, r := range refSummary.Rules {
		if r.Precedence != wantPrec[i] {
			t.Errorf("rule %q precedence %d, want %d", r.Rule, r.Precedence, wantPrec[i])
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 50 {
		shuffled := slices.Clone(list)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		in, err := Compile("web", shuffled, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := in.Summary(); !reflect.DeepEqual(got, refSummary) {
			t.Fatalf("shuffle %d: summary differs:\n got %+v\nwant %+v", n, got, refSummary)
		}
		for _, src := range sources {
			if got, want := in.AuthorizeL4(src), ref.AuthorizeL4(src); got != want {
				t.Fatalf("shuffle %d: AuthorizeL4(%s) = %v, want %v", n, src, got, want)
			}
		}
	}
}

// TestPrecedenceTable checks the computed precedence against every row of
// the table in Consul's intentions documentation.
func TestPrecedenceTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		srcNS, srcName, dstNS, dstName string
		want                           int
	}{
		{"default", "api", "default", "web", 9},
		{"default", "*", "default", "web", 8},
		{"*", "*", "default", "web", 7},
		{"default", "api", "default", "*", 6},
		{"default", "*", "default", "*", 5},
		{"*", "*", "default", "*", 4},
		{"default", "api", "*", "*", 3},
		{"default", "*", "*", "*", 2},
		{"*", "*", "*", "*", 1},
		{"", "api", "", "web", 9}, // empty namespace is the (exact) default
	}
	for _, tt := range tests {
		i := &api.Intention{SourceNS: tt.srcNS, SourceName: tt.srcName, DestinationNS: tt.dstNS, DestinationName: tt.dstName}
		if got := precedence(i); got != tt.want {
			t.Errorf("precedence(%s/%s -> %s/%s) = %d, want %d", tt.srcNS, tt.srcName, tt.dstNS, tt.dstName, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	td := trustDomain()
	tests := []struct {
		name        string
		destination string
		list        []*api.Intention
		opts        CompileOptions
		wantErr     string
	}{
		{"empty destination", "", nil, CompileOptions{TrustDomain: td}, "destination"},
		{"wildcard destination", "*", nil, CompileOptions{TrustDomain: td}, "exact service name"},
		{"zero trust domain", "web", nil, CompileOptions{}, "TrustDomain is required"},
		{"nil entry", "web", []*api.Intention{ixn("a", "web", allow), nil}, CompileOptions{TrustDomain: td}, "intention 1: is nil"},
		{"empty source name", "web", []*api.Intention{ixn("", "web", allow)}, CompileOptions{TrustDomain: td}, "SourceName is empty"},
		{"empty destination name", "web", []*api.Intention{ixn("api", "", allow)}, CompileOptions{TrustDomain: td}, "DestinationName is empty"},
		{"unknown action", "web", []*api.Intention{ixn("api", "web", "permit")}, CompileOptions{TrustDomain: td}, `Action "permit"`},
		{"empty action without permissions", "web", []*api.Intention{ixn("api", "web", "")}, CompileOptions{TrustDomain: td}, `Action ""`},
		{"partial wildcard", "web", []*api.Intention{ixn("ap*", "web", allow)}, CompileOptions{TrustDomain: td}, "cannot be part of a value"},
		{"exact name after wildcard namespace", "web",
			[]*api.Intention{with(ixn("api", "web", allow), func(i *api.Intention) { i.SourceNS = "*" })},
			CompileOptions{TrustDomain: td}, "cannot follow wildcard SourceNS"},
		{"wildcard partition", "web",
			[]*api.Intention{with(ixn("api", "web", allow), func(i *api.Intention) { i.SourcePartition = "*" })},
			CompileOptions{TrustDomain: td}, "SourcePartition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, err := Compile(tt.destination, tt.list, tt.opts)
			if err == nil {
				t.Fatalf("Compile succeeded (%+v), want error containing %q", in.Summary(), tt.wantErr)
			}
			if in != nil {
				t.Errorf("Compile returned a non-nil set with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "policy: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Compile error %q, want prefix \"policy: \" and %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompileAcceptsL7WithoutAction(t *testing.T) {
	t.Parallel()
	if _, err := Compile("web", []*api.Intention{l7("api", "web")}, CompileOptions{TrustDomain: trustDomain()}); err != nil {
		t.Fatalf("Compile(L7 intention with empty Action): %v", err)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	list := []*api.Intention{
		ixn("*", "web", deny),
		l7("api", "web"),
		with(ixn("db", "web", allow), func(i *api.Intention) { i.ID, i.SourceNS = "", "" }),
		with(ixn("x", "web", deny), func(i *api.Intention) { i.SourcePeer = "east" }),
		ixn("api", "db", allow),
	}
	in, err := Compile("web", list, CompileOptions{TrustDomain: trustDomain(), DefaultAllow: true})
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{
		Loaded:      true,
		Destination: "web",
		TrustDomain: testTD,
		Default:     "allow",
		Rules: []RuleSummary{
			{Rule: "intention web<-api (id api-web)", Precedence: 9, SourcePartition: "default", SourceNamespace: "default", SourceName: "api", Action: "L7 permissions",
				Permissions: []PermissionSummary{{Rule: "intention web<-api (id api-web) permission 1", Action: "allow", Match: "path_prefix=/"}}},
			{Rule: "intention web<-db", Precedence: 9, SourcePartition: "default", SourceNamespace: "default", SourceName: "db", Action: "allow"},
			{Rule: "intention web<-* (id *-web)", Precedence: 8, SourcePartition: "default", SourceNamespace: "default", SourceName: "*", Action: "deny"},
		},
		Ignored: []IgnoredIntention{
			{Rule: "intention db<-api (id api-db)", Reason: "destination is not web"},
			{Rule: "intention web<-x (peer east) (id x-web)", Reason: "source peer east (cluster peering is not supported)"},
		},
	}
	got := in.Summary()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Summary:\n got %+v\nwant %+v", got, want)
	}
	// The summary is a copy: editing it must not change the compiled set.
	got.Rules[0].Rule = "changed"
	got.Ignored[0].Rule = "changed"
	if again := in.Summary(); !reflect.DeepEqual(again, want) {
		t.Fatalf("Summary changed after editing a returned copy: %+v", again)
	}
	if _, err := json.Marshal(in.Summary()); err != nil {
		t.Fatalf("json.Marshal(Summary): %v", err)
	}
}

func TestCompileDoesNotRetainInput(t *testing.T) {
	t.Parallel()
	i := ixn("api", "web", allow)
	in, err := Compile("web", []*api.Intention{i}, CompileOptions{TrustDomain: trustDomain()})
	if err != nil {
		t.Fatal(err)
	}
	i.Action, i.SourceName = deny, "db"
	if got := in.AuthorizeL4(svc("api")); !got.Allow {
		t.Fatalf("after editing the input, AuthorizeL4(api) = %v, want the compiled allow", got)
	}
}

func TestDecisionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    Decision
		want string
	}{
		{Decision{Allow: true, Rule: "intention web<-api", Reason: "r1"}, "allow by intention web<-api: r1"},
		{Decision{Allow: false, Rule: RuleTrustDomain, Reason: "r2"}, "deny by trust-domain: r2"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAuthorizer(t *testing.T) {
	t.Parallel()
	var a Authorizer
	if got := a.AuthorizeL4(svc("api")); got.Allow || got.Rule != RuleNotLoaded {
		t.Fatalf("zero Authorizer: AuthorizeL4 = %v, want deny by %s", got, RuleNotLoaded)
	}
	if a.Load() != nil {
		t.Fatal("zero Authorizer: Load() != nil")
	}
	opts := CompileOptions{TrustDomain: trustDomain()}
	allowSet, err := Compile("web", []*api.Intention{ixn("api", "web", allow)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	denySet, err := Compile("web", []*api.Intention{ixn("api", "web", deny)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Store(allowSet)
	if a.Load() != allowSet {
		t.Fatal("Load() did not return the stored set")
	}
	if got := a.AuthorizeL4(svc("api")); !got.Allow {
		t.Fatalf("after Store(allow): %v", got)
	}
	a.Store(denySet)
	if got := a.AuthorizeL4(svc("api")); got.Allow {
		t.Fatalf("after Store(deny): %v", got)
	}
	a.Store(nil)
	if got := a.AuthorizeL4(svc("api")); got.Allow || got.Rule != RuleNotLoaded {
		t.Fatalf("after Store(nil): %v", got)
	}

	// Concurrent readers while one writer swaps sets; run with -race.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				d := a.AuthorizeL4(svc("api"))
				if d.Rule != RuleNotLoaded && d.Rule != "intention web<-api (id api-web)" {
					t.Errorf("concurrent AuthorizeL4 = %v", d)
					return
				}
			}
		})
	}
	for n := range 1000 {
		if n%2 == 0 {
			a.Store(allowSet)
		} else {
			a.Store(denySet)
		}
	}
	wg.Wait()
}

// TestAuthorizeL4AllowDoesNotAllocate holds AuthorizeL4 to its contract: the
// allow path (and the intention and default deny paths) allocate nothing.
func TestAuthorizeL4AllowDoesNotAllocate(t *testing.T) {
	var a Authorizer
	a.Store(benchIntentions(t))
	for _, src := range []spiffeid.ID{svc("svc-07"), svc("nobody"), svc("blocked")} {
		allocs := testing.AllocsPerRun(100, func() { _ = a.AuthorizeL4(src) })
		if allocs != 0 {
			t.Errorf("AuthorizeL4(%s) allocated %v times per call, want 0", src, allocs)
		}
	}
}
