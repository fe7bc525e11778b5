package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// settingsFile mirrors sessiond's `--config` TOML (src/config.rs, `Settings`): the same keys,
// the same types (numbers are strings there), unknown keys rejected as sessiond rejects them.
// When sessiond gains a setting the chart uses, add it here too.
type settingsFile struct {
	GrpcAddr             *string       `toml:"grpc_addr"`
	HTTPAddr             *string       `toml:"http_addr"`
	DataDir              *string       `toml:"data_dir"`
	KeyDir               *string       `toml:"key_dir"`
	SigningKeyFile       *string       `toml:"signing_key_file"`
	VerificationKeyFiles []string      `toml:"verification_key_files"`
	KeyAlgorithm         *string       `toml:"key_algorithm"`
	Store                *string       `toml:"store"`
	Migrate              *bool         `toml:"migrate"`
	AccessTokenTTL       *string       `toml:"access_token_ttl"`
	SessionTTL           *string       `toml:"session_ttl"`
	MaxSessionTTL        *string       `toml:"max_session_ttl"`
	RevocationPoll       *string       `toml:"revocation_poll"`
	LastSeenInterval     *string       `toml:"last_seen_interval"`
	MaxSessionsPerUser   *string       `toml:"max_sessions_per_user"`
	Issuer               *string       `toml:"issuer"`
	AuditRetention       *string       `toml:"audit_retention"`
	LogFormat            *string       `toml:"log_format"`
	CallersFile          *string       `toml:"callers_file"`
	MaxInFlight          *string       `toml:"max_in_flight"`
	TLSCertFile          *string       `toml:"tls_cert_file"`
	TLSKeyFile           *string       `toml:"tls_key_file"`
	TLSClientCAFile      *string       `toml:"tls_client_ca_file"`
	Callers              []callerEntry `toml:"callers"`
}

// callersFile mirrors the `--callers-file` TOML.
type callersFile struct {
	Callers []callerEntry `toml:"callers"`
}

type callerEntry struct {
	Name              string   `toml:"name"`
	CredentialSHA256  *string  `toml:"credential_sha256"`
	ClientCertSubject *string  `toml:"client_cert_subject"`
	Roles             []string `toml:"roles"`
	RateLimit         *uint32  `toml:"rate_limit"`
}

// tomlError spells out which keys strict decoding refused.
func tomlError(err error) string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var keys []string
		for _, e := range strict.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return "unknown key(s) " + strings.Join(keys, ", ") + " (sessiond rejects unknown keys)"
	}
	return err.Error()
}

// humantime's syntax: one or more <number><unit> pieces.
var humantime = regexp.MustCompile(`^\s*(\d+\s*(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$`)

func checkSessiondConfig(where, text string, p *problems) {
	var s settingsFile
	dec := toml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		p.add("%s: sessiond config.toml: %s", where, tomlError(err))
		return
	}
	for key, addr := range map[string]*string{"grpc_addr": s.GrpcAddr, "http_addr": s.HTTPAddr} {
		if addr == nil {
			continue
		}
		host, port, err := net.SplitHostPort(*addr)
		if err != nil || net.ParseIP(host) == nil || port == "" {
			p.add("%s: %s = %q is not an IP:port socket address", where, key, *addr)
		}
	}
	for key, d := range map[string]*string{
		"access_token_ttl": s.AccessTokenTTL, "session_ttl": s.SessionTTL, "max_session_ttl": s.MaxSessionTTL,
		"revocation_poll": s.RevocationPoll, "last_seen_interval": s.LastSeenInterval, "audit_retention": s.AuditRetention,
	} {
		if d != nil && !humantime.MatchString(*d) {
			p.add("%s: %s = %q is not a duration (30s, 15m, 1h, 30d)", where, key, *d)
		}
	}
	for key, n := range map[string]*string{"max_sessions_per_user": s.MaxSessionsPerUser, "max_in_flight": s.MaxInFlight} {
		if n != nil && !regexp.MustCompile(`^\d+$`).MatchString(*n) {
			p.add("%s: %s = %q is not a whole number", where, key, *n)
		}
	}
	if s.LogFormat != nil && *s.LogFormat != "text" && *s.LogFormat != "json" {
		p.add("%s: log_format = %q: text or json", where, *s.LogFormat)
	}
	if s.Store != nil {
		checkStoreURI(where+": store", *s.Store, p)
	}
	checkCallers(where, s.Callers, p)
}

func checkCallersFile(where, text string, p *problems) {
	var c callersFile
	dec := toml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		p.add("%s: callers.toml: %s", where, tomlError(err))
		return
	}
	if len(c.Callers) == 0 {
		p.add("%s: callers.toml has no [[callers]]: sessiond would refuse a non-loopback address", where)
	}
	checkCallers(where, c.Callers, p)
}

func checkCallers(where string, callers []callerEntry, p *problems) {
	names := map[string]bool{}
	for _, c := range callers {
		cw := fmt.Sprintf("%s: caller %q", where, c.Name)
		if c.Name == "" || names[c.Name] {
			p.add("%s: name empty or repeated", cw)
		}
		names[c.Name] = true
		if c.CredentialSHA256 == nil && c.ClientCertSubject == nil {
			p.add("%s: needs credential_sha256 or client_cert_subject", cw)
		}
		if h := c.CredentialSHA256; h != nil {
			b, err := hex.DecodeString(strings.TrimPrefix(*h, "sha256:"))
			if err != nil || len(b) != 32 {
				p.add("%s: credential_sha256 must be 64 hex digits", cw)
			}
		}
		for _, r := range c.Roles {
			if r != "issuer" && r != "validator" && r != "admin" {
				p.add("%s: unknown role %q (issuer, validator, admin)", cw, r)
			}
		}
		if c.RateLimit != nil && *c.RateLimit == 0 {
			p.add("%s: rate_limit must be positive", cw)
		}
	}
}

// The options src/store/scylla/config.rs accepts; it rejects any other, so a typo here would
// stop sessiond at start.
var scyllaOptions = map[string]bool{
	"dc": true, "rf": true, "replication": true, "consistency": true, "serial_consistency": true,
	"request_timeout": true, "connect_timeout": true, "schema_agreement_timeout": true,
	"speculative_retries": true, "speculative_delay": true, "username": true, "user": true,
	"password": true, "tls": true, "tls_ca": true, "tls_cert": true, "tls_key": true, "tablets": true,
}

func checkStoreURI(where, uri string, p *problems) {
	if uri == "embedded" {
		return
	}
	rest, ok := strings.CutPrefix(uri, "scylla://")
	if !ok {
		p.add("%s: %q is neither `embedded` nor a scylla:// URI", where, uri)
		return
	}
	hostsAndPath, query, _ := strings.Cut(rest, "?")
	authority, keyspace, _ := strings.Cut(hostsAndPath, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		authority = authority[i+1:]
	}
	for _, h := range strings.Split(authority, ",") {
		if strings.TrimSpace(h) == "" {
			p.add("%s: empty host in %q", where, uri)
		}
	}
	if keyspace != "" && !regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`).MatchString(keyspace) {
		p.add("%s: keyspace %q: use [a-z][a-z0-9_]*, at most 48 bytes", where, keyspace)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, _, _ := strings.Cut(kv, "=")
		k, err := url.PathUnescape(k)
		if err != nil || !scyllaOptions[k] {
			p.add("%s: unknown option %q in %q", where, k, uri)
		}
		if seen[k] {
			p.add("%s: option %q given twice", where, k)
		}
		seen[k] = true
	}
}

func checkCallersPath(path string) int {
	var p problems
	text, err := os.ReadFile(path)
	if err != nil {
		p.add("%v", err)
		return p.report(path)
	}
	checkCallersFile(path, string(text), &p)
	if code := p.report(path); code != 0 {
		return code
	}
	fmt.Printf("  checked: callers %s: keys, hashes and roles as sessiond reads them\n", path)
	return 0
}
