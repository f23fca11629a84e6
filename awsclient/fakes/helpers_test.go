package fakes

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strings"
)

func httptestRequest(method, path, ctype, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	return r
}

// xmlCode extracts Error/Code from an SES or S3 XML error body.
func xmlCode(body string) string {
	var e struct {
		Code  string `xml:"Code"`
		Error struct {
			Code string `xml:"Code"`
		} `xml:"Error"`
	}
	if xml.Unmarshal([]byte(body), &e) != nil {
		return ""
	}
	if e.Error.Code != "" {
		return e.Error.Code
	}
	return e.Code
}
