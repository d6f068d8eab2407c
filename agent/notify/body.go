package notify

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"os"
	"slices"
	"strings"
)

// maxBody bounds --notify-body: a webhook body, not a document.
const maxBody = 64 << 10

// ParseBody reads --notify-body (a file, or the body itself when it contains
// "${") and returns the Format that fills its ${field} placeholders from each
// event (os.Expand; the fields are Event.Fields; $$ is a literal $), each
// value escaped for contentType:
//   - JSON (application/json, */*+json): as the content of a JSON string, so
//     every placeholder must sit inside one ("text": "${summary}");
//   - application/x-www-form-urlencoded: url.QueryEscape;
//   - XML (application/xml, text/xml, */*+xml): as XML character data;
//   - anything else (text/plain): as it is.
//
// Everything that could fail on an event fails here instead, at start: an
// unknown field, a ${ without its }, and with JSON a placeholder outside a
// string or a body that is not JSON for a sample event of each phase.
func ParseBody(src, contentType string) (Format, error) {
	text := src
	if !strings.Contains(src, "${") {
		b, err := os.ReadFile(src)
		if err != nil {
			return Format{}, fmt.Errorf("not an inline body (no ${field}) and not a readable file: %w", err)
		}
		text = string(b)
	}
	return parseBody(text, contentType, false)
}

// ParseSecretBody is ParseBody for a body read from SSM Parameter Store: the
// body itself, with or without placeholders, and errors that never quote it
// (it may hold an API key).
func ParseSecretBody(text, contentType string) (Format, error) {
	return parseBody(text, contentType, true)
}

// parseBody checks text and makes its Format; secret keeps the body and what
// the JSON decoder saw of it out of the errors.
func parseBody(text, contentType string, secret bool) (Format, error) {
	if len(text) > maxBody {
		return Format{}, fmt.Errorf("is %d bytes, over %d: a webhook body, not a document", len(text), maxBody)
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Format{}, fmt.Errorf("content type %q: %w", contentType, err)
	}
	if err := checkPlaceholders(text, secret); err != nil {
		return Format{}, err
	}
	esc := escaper(mediaType)
	// render fills each placeholder from the first of fields that has it.
	render := func(fields ...map[string]string) []byte {
		return []byte(os.Expand(text, func(name string) string {
			if name == "$" {
				return "$"
			}
			for _, f := range fields {
				if v, ok := f[name]; ok {
					return esc(v)
				}
			}
			return ""
		}))
	}
	f := Format{ContentType: contentType, render: func(e Event) ([]byte, error) { return render(e.Fields()), nil }}
	if !isJSON(mediaType) {
		return f, nil
	}
	for _, p := range []Phase{PhaseDetected, PhaseDrained} {
		body := render(SampleEvent(p).Fields())
		if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
			if secret {
				return Format{}, fmt.Errorf("is not JSON for a sample %s event (content type %s); the body is not shown: it may hold a secret", p, mediaType)
			}
			return Format{}, fmt.Errorf("is not JSON for a sample %s event (content type %s): %v:\n%s", p, mediaType, err, body)
		}
	}
	// A value that is JSON outside a string in the samples ("false") may not
	// be in another event ("", or text); "!" is valid only inside a string,
	// and there not after a backslash. With every value "!" the body is JSON
	// only if every placeholder is where any escaped value keeps it JSON.
	names := placeholders(text)
	poison := map[string]string{}
	for _, name := range names {
		poison[name] = "!"
	}
	if !json.Valid(render(poison)) {
		sample := SampleEvent(PhaseDrained).Fields()
		for _, name := range names {
			if !json.Valid(render(map[string]string{name: "!"}, sample)) {
				return Format{}, fmt.Errorf("%s sits outside a JSON string (or after a backslash): with content type %s, put every placeholder inside quotes, e.g. \"%[1]s\"", spelling(text, name), mediaType)
			}
		}
		return Format{}, fmt.Errorf("has a placeholder outside a JSON string (or after a backslash): with content type %s, put every placeholder inside quotes, e.g. \"${summary}\"", mediaType)
	}
	return f, nil
}

// checkPlaceholders refuses what os.Expand would take silently: a ${ without
// its }, an empty ${}, and names that are not fields. With secret, a name
// that is not a field is not quoted: it may be part of a key that holds a $.
func checkPlaceholders(text string, secret bool) error {
	for i := 0; i < len(text); i++ {
		switch {
		case strings.HasPrefix(text[i:], "$$"):
			i++
		case strings.HasPrefix(text[i:], "${}"):
			return fmt.Errorf("has an empty ${} at byte %d (a literal $ is written $$)", i)
		case strings.HasPrefix(text[i:], "${") && !strings.Contains(text[i:], "}"):
			return fmt.Errorf("has a ${ without its } at byte %d (a literal $ is written $$)", i)
		}
	}
	fields := SampleEvent(PhaseDrained).Fields()
	var unknown []string
	for _, name := range placeholders(text) {
		if _, ok := fields[name]; !ok {
			unknown = append(unknown, spelling(text, name))
		}
	}
	if len(unknown) > 0 && secret {
		return fmt.Errorf("has %d placeholders that are not fields (not shown: the body may hold a secret; a literal $ is written $$); the fields are %s",
			len(unknown), strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
	}
	if len(unknown) > 0 {
		names := make([]string, 0, len(fields))
		for k := range fields {
			names = append(names, k)
		}
		slices.Sort(names)
		return fmt.Errorf("%s: not a field (a literal $ is written $$); the fields are %s",
			strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return nil
}

// placeholders are the names os.Expand asks for in text, once each, without "$" ($$).
func placeholders(text string) []string {
	var names []string
	os.Expand(text, func(name string) string {
		if name != "$" && !slices.Contains(names, name) {
			names = append(names, name)
		}
		return ""
	})
	return names
}

// spelling is how text writes the placeholder name: ${name}, or $name.
func spelling(text, name string) string {
	if strings.Contains(text, "${"+name+"}") {
		return "${" + name + "}"
	}
	return "$" + name
}

func escaper(mediaType string) func(string) string {
	switch {
	case isJSON(mediaType):
		return func(s string) string {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			q := strings.TrimSuffix(b.String(), "\n")
			return q[1 : len(q)-1]
		}
	case mediaType == "application/x-www-form-urlencoded":
		return url.QueryEscape
	case mediaType == "application/xml" || mediaType == "text/xml" || strings.HasSuffix(mediaType, "+xml"):
		return func(s string) string {
			var b strings.Builder
			_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
			return b.String()
		}
	}
	return func(s string) string { return s }
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}
