package policy

import (
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Policy is a compiled, immutable rule set: Consul intentions
// (*Intentions), local rules (*Rules), or both layered (*Layered). Every
// method is safe for concurrent use, never blocks, and allocates nothing
// on the allow path.
type Policy interface {
	// AuthorizeL4 decides a connection to a tcp service, where no request
	// will be seen: rules about requests cannot allow it.
	AuthorizeL4(src spiffeid.ID) Decision
	// Admit decides, at the handshake of a connection to an HTTP service,
	// whether src may send requests at all; each is then decided by
	// Authorize.
	Admit(src spiffeid.ID) Decision
	// Authorize decides one HTTP request r from src.
	Authorize(src spiffeid.ID, r *Request) Decision
	// Summary describes the rules for /config_dump and the admin views.
	Summary() Summary
}

// Layered is Consul intentions with local rules on top: a request is
// allowed only when both allow it (a deny from either wins). When the
// local rules are in dry-run mode and would deny what the intentions allow,
// the decision is theirs, with Allow and DryRun set, so that it is logged
// and counted as "would deny".
type Layered struct {
	Base  Policy
	Local *Rules
}

// AuthorizeL4 implements Policy.
func (l *Layered) AuthorizeL4(src spiffeid.ID) Decision {
	return l.combine(l.Base.AuthorizeL4(src), func() Decision { return l.Local.AuthorizeL4(src) })
}

// Admit implements Policy.
func (l *Layered) Admit(src spiffeid.ID) Decision {
	return l.combine(l.Base.Admit(src), func() Decision { return l.Local.Admit(src) })
}

// Authorize implements Policy.
func (l *Layered) Authorize(src spiffeid.ID, r *Request) Decision {
	d := l.Base.Authorize(src, r)
	if !d.Allow {
		return d
	}
	if ld := l.Local.Authorize(src, r); !ld.Allow || ld.DryRun {
		return ld
	}
	return d
}

func (l *Layered) combine(d Decision, local func() Decision) Decision {
	if !d.Allow {
		return d
	}
	if ld := local(); !ld.Allow || ld.DryRun {
		return ld
	}
	return d
}

// Summary implements Policy: the base's summary with the local rules'.
func (l *Layered) Summary() Summary {
	s := l.Base.Summary()
	ls := l.Local.Summary()
	s.Local = &ls
	return s
}

// Layer is one layer's decision, for the explain view.
type Layer struct {
	Layer    string   `json:"layer"`
	Decision Decision `json:"decision"`
}

// Explain decides a request (r non-nil) or a connection (r nil; tcp when
// l4) with p and also returns each layer's own decision.
func Explain(p Policy, src spiffeid.ID, r *Request, l4 bool) (Decision, []Layer) {
	if p == nil {
		return notLoaded, nil
	}
	decide := func(p Policy) Decision {
		switch {
		case r != nil:
			return p.Authorize(src, r)
		case l4:
			return p.AuthorizeL4(src)
		default:
			return p.Admit(src)
		}
	}
	name := func(p Policy) string {
		switch p.(type) {
		case *Intentions:
			return "intentions"
		case *Rules:
			return "local rules"
		}
		return "policy"
	}
	d := decide(p)
	if lp, ok := p.(*Layered); ok {
		return d, []Layer{{name(lp.Base), decide(lp.Base)}, {"local rules", decide(lp.Local)}}
	}
	return d, []Layer{{name(p), d}}
}

// Authorizer holds the current policy and authorizes against it. The zero
// value is ready to use and denies everything (RuleNotLoaded) until Store
// is called. It must not be copied after first use.
//
// The policy has two parts that change independently: the base (Consul
// intentions from a watch, or the static rules) and optional local rules
// (reloaded from a file). Their writers call Store and StoreLocal from
// their own goroutines; any number of goroutines authorize and Load
// concurrently, without locks.
type Authorizer struct {
	current atomic.Pointer[Policy]

	mu    sync.Mutex // serializes writers
	base  Policy
	local *Rules
}

// Store publishes p as the base policy for every later decision.
// Connections already admitted are not re-evaluated (requests are).
// Storing nil makes everything deny.
func (a *Authorizer) Store(p Policy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.base = p
	a.publish()
}

// StoreLocal publishes local rules layered over the base (nil removes
// them).
func (a *Authorizer) StoreLocal(r *Rules) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.local = r
	a.publish()
}

func (a *Authorizer) publish() {
	var p Policy
	switch {
	case a.base == nil:
		a.current.Store(nil)
		return
	case a.local != nil:
		p = &Layered{Base: a.base, Local: a.local}
	default:
		p = a.base
	}
	a.current.Store(&p)
}

// Load returns the current policy, or nil before the first Store.
func (a *Authorizer) Load() Policy {
	if p := a.current.Load(); p != nil {
		return *p
	}
	return nil
}

// AuthorizeL4 authorizes a tcp connection from src; with no policy loaded
// it denies (RuleNotLoaded).
func (a *Authorizer) AuthorizeL4(src spiffeid.ID) Decision {
	p := a.current.Load()
	if p == nil {
		return notLoaded
	}
	return (*p).AuthorizeL4(src)
}

// Admit authorizes the handshake of a connection to an HTTP service.
func (a *Authorizer) Admit(src spiffeid.ID) Decision {
	p := a.current.Load()
	if p == nil {
		return notLoaded
	}
	return (*p).Admit(src)
}

// Authorize decides one HTTP request.
func (a *Authorizer) Authorize(src spiffeid.ID, r *Request) Decision {
	p := a.current.Load()
	if p == nil {
		return notLoaded
	}
	return (*p).Authorize(src, r)
}

var notLoaded = Decision{Allow: false, Rule: RuleNotLoaded, Reason: "authorization rules not loaded", Code: CodeForbidden}
