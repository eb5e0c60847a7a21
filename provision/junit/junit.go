// Package junit writes test results as JUnit XML, the dialect Jenkins, GitLab and the
// GitHub test-report actions read: <testsuites> holding <testsuite>s holding <testcase>s,
// each with at most one <failure>, <error> or <skipped>.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Suites is the whole report.
type Suites struct {
	Name   string
	Suites []Suite
}

// Suite is one <testsuite>.
type Suite struct {
	Name       string
	Timestamp  time.Time // zero: no timestamp attribute
	Time       time.Duration
	Properties []Property
	Cases      []Case
	SystemOut  string
}

// Property is a name and value shown with a suite (kernel release, module, config).
type Property struct {
	Name, Value string
}

// Case is one <testcase>. A case with neither Failure, Error nor Skipped passed.
type Case struct {
	Name, Classname string
	Time            time.Duration
	Failure         *Failure // the test ran and said it failed
	Error           *Failure // the test could not finish (crashed, timed out)
	Skipped         *Skipped
	SystemOut       string
}

// Failure is the content of a <failure> or <error> element.
type Failure struct {
	Message, Type, Text string
}

// Skipped is the content of a <skipped> element.
type Skipped struct {
	Message string
}

type xmlSuites struct {
	XMLName  xml.Name   `xml:"testsuites"`
	Name     string     `xml:"name,attr,omitempty"`
	Tests    int        `xml:"tests,attr"`
	Failures int        `xml:"failures,attr"`
	Errors   int        `xml:"errors,attr"`
	Skipped  int        `xml:"skipped,attr"`
	Time     string     `xml:"time,attr"`
	Suites   []xmlSuite `xml:"testsuite"`
}

type xmlSuite struct {
	Name       string         `xml:"name,attr"`
	Tests      int            `xml:"tests,attr"`
	Failures   int            `xml:"failures,attr"`
	Errors     int            `xml:"errors,attr"`
	Skipped    int            `xml:"skipped,attr"`
	Time       string         `xml:"time,attr"`
	Timestamp  string         `xml:"timestamp,attr,omitempty"`
	Properties *xmlProperties `xml:"properties"`
	Cases      []xmlCase      `xml:"testcase"`
	SystemOut  *xmlText       `xml:"system-out"`
}

type xmlProperties struct {
	Properties []xmlProperty `xml:"property"`
}

type xmlProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type xmlCase struct {
	Name      string      `xml:"name,attr"`
	Classname string      `xml:"classname,attr"`
	Time      string      `xml:"time,attr"`
	Failure   *xmlFailure `xml:"failure"`
	Error     *xmlFailure `xml:"error"`
	Skipped   *xmlSkipped `xml:"skipped"`
	SystemOut *xmlText    `xml:"system-out"`
}

type xmlFailure struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",cdata"`
}

type xmlSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

// Texts are CDATA so a kernel log keeps its lines in the file; encoding/xml splits a
// "]]>" inside.
type xmlText struct {
	Text string `xml:",cdata"`
}

// Write writes s as an indented JUnit XML document with its XML header. The counts of
// every element are computed from its cases; times are in seconds with three decimals.
// Characters XML 1.0 cannot hold (control characters from a kernel log, invalid UTF-8)
// are written as "\xNN" so that the file stays well-formed and the bytes stay readable.
func Write(w io.Writer, s Suites) error {
	doc := xmlSuites{Name: clean(s.Name)}
	var total time.Duration
	for _, su := range s.Suites {
		xs := xmlSuite{
			Name: clean(su.Name),
			Time: seconds(su.Time),
		}
		if !su.Timestamp.IsZero() {
			xs.Timestamp = su.Timestamp.UTC().Format("2006-01-02T15:04:05")
		}
		if len(su.Properties) > 0 {
			xs.Properties = &xmlProperties{}
			for _, p := range su.Properties {
				xs.Properties.Properties = append(xs.Properties.Properties, xmlProperty{Name: clean(p.Name), Value: clean(p.Value)})
			}
		}
		for _, c := range su.Cases {
			xc := xmlCase{Name: clean(c.Name), Classname: clean(c.Classname), Time: seconds(c.Time), SystemOut: text(c.SystemOut)}
			xs.Tests++
			// One outcome per case, as CI tools count them: a case that could not
			// finish is an error whatever it reported before.
			switch {
			case c.Error != nil:
				xs.Errors++
				xc.Error = failure(c.Error)
			case c.Failure != nil:
				xs.Failures++
				xc.Failure = failure(c.Failure)
			case c.Skipped != nil:
				xs.Skipped++
				xc.Skipped = &xmlSkipped{Message: clean(c.Skipped.Message)}
			}
			xs.Cases = append(xs.Cases, xc)
		}
		xs.SystemOut = text(su.SystemOut)
		doc.Tests += xs.Tests
		doc.Failures += xs.Failures
		doc.Errors += xs.Errors
		doc.Skipped += xs.Skipped
		total += su.Time
		doc.Suites = append(doc.Suites, xs)
	}
	doc.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("writing JUnit XML: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("writing JUnit XML: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("writing JUnit XML: %w", err)
	}
	return nil
}

func failure(f *Failure) *xmlFailure {
	return &xmlFailure{Message: clean(f.Message), Type: clean(f.Type), Text: clean(f.Text)}
}

func text(s string) *xmlText {
	if s == "" {
		return nil
	}
	return &xmlText{Text: clean(s)}
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// clean replaces what XML 1.0 cannot carry with a visible "\xNN" escape: control
// characters other than tab, newline and carriage return, U+FFFE/U+FFFF, and each byte
// of invalid UTF-8.
func clean(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !xmlChar(r) {
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, "\\x%02x", c)
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isClean(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !xmlChar(r) {
			return false
		}
		i += size
	}
	return true
}

// xmlChar reports whether r is a Char of XML 1.0 (production [2]).
func xmlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}
