package signal

import (
	"errors"
	"regexp/syntax"
	"slices"
	"sync"
	"sync/atomic"
)

// digitPatterns matches a string of ASCII digits against several of libphonenumber's metadata
// patterns in one pass. libphonenumber checks a number against up to a dozen regular expressions
// (the general pattern, then premium rate, toll free, … fixed line, mobile), each of which costs
// Go's regexp engine about a microsecond on a ten-digit number. Those patterns are written over
// the ten digits only, so a DFA built from all of them together reads a number in one step per
// digit. The DFA is built lazily from the compiled regexp programs (regexp/syntax, the same
// parser and compiler regexp uses), so it accepts exactly the strings the regular expressions do:
// it is those regular expressions, executed differently.
//
// Each pattern matches either the whole input (like `^(?:p)$`, national number patterns) or any
// prefix of it (like `^(?:p)`, leading digits and international prefixes).
//
// States are built on first use and kept. Their number is bounded by maxDigitStates; a walk that
// would need more reports !ok and the caller uses libphonenumber itself.
type digitPatterns struct {
	progs  []*syntax.Prog
	prefix []bool

	mu     sync.Mutex // guards states and the building of new transitions
	states map[string]*digitState
	start  *digitState
}

// maxDigitStates bounds the states one digitPatterns keeps (a few hundred bytes each). With
// phonenumbers v1.8.1's metadata the complete automata of all 254 regions and non-geographic
// entities together have about 26,000 states (at most ~500 for one region), so the bound only
// guards against future metadata that would not compile to a small automaton.
const maxDigitStates = 1 << 14

// digitState is one DFA state: the set of NFA threads (pattern index and program counter) alive
// after the digits read so far.
type digitState struct {
	threads []uint32
	next    [10]atomic.Pointer[digitState]
	// match has bit i set when pattern i matches the digits read so far.
	match uint32
}

const (
	threadPCBits = 24
	// threadPrefixMatched is the pseudo program counter of a prefix pattern that has matched: it
	// stays alive through every later digit.
	threadPrefixMatched = 1<<threadPCBits - 1
)

var errUnsupportedPattern = errors.New("pattern needs features digitPatterns does not implement")

// newDigitPatterns compiles patterns as regexp.MustCompile would. prefix[i] says whether pattern i
// matches prefixes rather than the whole input. A pattern with anchors or word boundaries inside
// it, which libphonenumber's metadata does not use, is refused.
func newDigitPatterns(patterns []string, prefix []bool) (*digitPatterns, error) {
	if len(patterns) > 32 || len(patterns) != len(prefix) {
		return nil, errors.New("digitPatterns: at most 32 patterns, each full or prefix")
	}
	p := &digitPatterns{prefix: prefix, states: make(map[string]*digitState)}
	for _, pat := range patterns {
		re, err := syntax.Parse(pat, syntax.Perl)
		if err != nil {
			return nil, err
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			return nil, err
		}
		if len(prog.Inst) >= threadPrefixMatched {
			return nil, errUnsupportedPattern
		}
		for _, in := range prog.Inst {
			if in.Op == syntax.InstEmptyWidth {
				return nil, errUnsupportedPattern
			}
		}
		p.progs = append(p.progs, prog)
	}
	var set []uint32
	seen := make(map[uint32]bool)
	for i, prog := range p.progs {
		set = p.closure(set, seen, i, uint32(prog.Start))
	}
	p.start = p.intern(set)
	return p, nil
}

// match returns the patterns (bit i for pattern i) that match digits, which must be ASCII digits.
// ok is false when the automaton has reached its size bound.
func (p *digitPatterns) match(digits string) (matched uint32, ok bool) {
	s := p.start
	for i := 0; i < len(digits); i++ {
		d := digits[i] - '0'
		next := s.next[d].Load()
		if next == nil {
			if next = p.build(s, d); next == nil {
				return 0, false
			}
		}
		s = next
	}
	return s.match, true
}

// build computes and records the transition from s on digit d, or returns nil when the state
// bound is reached.
func (p *digitPatterns) build(s *digitState, d byte) *digitState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if next := s.next[d].Load(); next != nil {
		return next
	}
	if len(p.states) >= maxDigitStates {
		return nil
	}
	r := rune('0' + d)
	var set []uint32
	seen := make(map[uint32]bool)
	for _, t := range s.threads {
		i, pc := int(t>>threadPCBits), t&threadPrefixMatched
		if pc == threadPrefixMatched {
			set = append(set, t)
			continue
		}
		if in := &p.progs[i].Inst[pc]; consumes(in, r) {
			set = p.closure(set, seen, i, in.Out)
		}
	}
	next := p.intern(set)
	s.next[d].Store(next)
	return next
}

// consumes reports whether in reads r.
func consumes(in *syntax.Inst, r rune) bool {
	switch in.Op {
	case syntax.InstRune, syntax.InstRune1:
		return in.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}

// closure adds to set the threads of pattern i reachable from pc without reading a digit: the
// instructions that consume a digit and the match instruction. seen holds the threads already
// visited while building the current state.
func (p *digitPatterns) closure(set []uint32, seen map[uint32]bool, i int, pc uint32) []uint32 {
	prog := p.progs[i]
	stack := []uint32{pc}
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		t := uint32(i)<<threadPCBits | pc
		if seen[t] {
			continue
		}
		seen[t] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Arg, in.Out)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, in.Out)
		case syntax.InstFail:
		case syntax.InstMatch:
			if p.prefix[i] {
				set = append(set, uint32(i)<<threadPCBits|threadPrefixMatched)
			} else {
				set = append(set, t)
			}
		default: // InstRune, InstRune1, InstRuneAny, InstRuneAnyNotNL
			set = append(set, t)
		}
	}
	return set
}

// intern returns the state for a thread set, creating it when new.
func (p *digitPatterns) intern(set []uint32) *digitState {
	slices.Sort(set)
	set = slices.Compact(set)
	var match uint32
	key := make([]byte, 0, 4*len(set))
	for _, t := range set {
		i, pc := int(t>>threadPCBits), t&threadPrefixMatched
		if pc == threadPrefixMatched || p.progs[i].Inst[pc].Op == syntax.InstMatch {
			match |= 1 << i
		}
		key = append(key, byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
	}
	if s, ok := p.states[string(key)]; ok {
		return s
	}
	s := &digitState{threads: slices.Clone(set), match: match}
	p.states[string(key)] = s
	return s
}
