package sns

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// awsHost matches the SNS endpoints of the commercial, GovCloud and China
// partitions: sns.<region>.amazonaws.com and sns.<region>.amazonaws.com.cn.
var awsHost = regexp.MustCompile(`^sns\.[a-z0-9]+(-[a-z0-9]+)*\.amazonaws\.com(\.cn)?$`)

// urlRule decides which URLs the relay may fetch: signing certificates and
// subscription confirmations. It is built once from the configured prefixes.
type urlRule struct {
	prefixes []prefix // empty: the AWS rule
}

type prefix struct {
	raw    string
	scheme string
	host   string // lower case, with port if any
	path   string
}

func newURLRule(prefixes []string) (urlRule, error) {
	var r urlRule
	for _, p := range prefixes {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err != nil {
			return urlRule{}, fmt.Errorf("cert url prefix %q: %w", p, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return urlRule{}, fmt.Errorf("cert url prefix %q: want http(s)://host[:port]/path", p)
		}
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		r.prefixes = append(r.prefixes, prefix{raw: p, scheme: u.Scheme, host: strings.ToLower(u.Host), path: path})
	}
	return r, nil
}

// parse parses s and rejects the forms that could smuggle a different target
// past a textual comparison: opaque URLs, user info, dot segments and
// backslashes.
func parseStrict(s string) (*url.URL, bool) {
	if s == "" || len(s) > 2048 || strings.ContainsAny(s, "\\ \t\r\n") {
		return nil, false
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" || u.Fragment != "" {
		return nil, false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, false
		}
	}
	return u, true
}

// certAllowed reports whether a signing certificate may be fetched from s.
// AWS rule: https, host sns.<region>.amazonaws.com[.cn] without a port,
// path ending in .pem, no query. With prefixes: s starts with one of them
// (compared textually and on the parsed scheme, host and path).
func (r urlRule) certAllowed(s string) bool {
	u, ok := parseStrict(s)
	if !ok {
		return false
	}
	if len(r.prefixes) == 0 {
		return u.Scheme == "https" && u.Port() == "" && awsHost.MatchString(u.Host) &&
			u.RawQuery == "" && strings.HasSuffix(u.Path, ".pem")
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(s, p.raw) && u.Scheme == p.scheme &&
			strings.ToLower(u.Host) == p.host && strings.HasPrefix(u.EscapedPath(), p.path) {
			return true
		}
	}
	return false
}

// originAllowed reports whether s may be fetched as a SubscribeURL: the
// same host rule as certificates, without the path requirements. With
// prefixes, scheme and host must equal those of a prefix: LocalStack serves
// its certificate under /_aws/sns/ but confirms subscriptions at /?Action=...
func (r urlRule) originAllowed(s string) bool {
	u, ok := parseStrict(s)
	if !ok {
		return false
	}
	if len(r.prefixes) == 0 {
		return u.Scheme == "https" && u.Port() == "" && awsHost.MatchString(u.Host)
	}
	for _, p := range r.prefixes {
		if u.Scheme == p.scheme && strings.ToLower(u.Host) == p.host {
			return true
		}
	}
	return false
}
