package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The built-in webhook formats (--notify-format).
const (
	// FormatJSON is the event itself, as JSON: for a receiver of our own.
	FormatJSON = "json"
	// FormatSlack is a Slack incoming-webhook message: the summary as its
	// text, and a colored attachment with the details. Slack-compatible
	// receivers take it too: Mattermost, Rocket.Chat, and Discord at the
	// webhook URL followed by /slack.
	FormatSlack = "slack"
	// FormatTeams is a Microsoft Teams message for a Workflows webhook ("When
	// a Teams webhook request is received"): an Adaptive Card, the only card
	// Workflows take now that Office 365 connectors and their MessageCard are
	// retired.
	FormatTeams = "teams"
	// FormatText is the summary alone as text/plain: for a receiver that
	// shows a body as it is, such as ntfy (a push notification per POST).
	FormatText = "text"
)

// Formats are the names NamedFormat knows, in the order --notify-format lists them.
func Formats() []string { return []string{FormatJSON, FormatSlack, FormatTeams, FormatText} }

// Format makes a webhook body of an event. The zero Format is FormatJSON.
type Format struct {
	// ContentType is the body's Content-Type; DefaultContentType when empty.
	ContentType string
	render      func(Event) ([]byte, error)
}

// Render is the body for e.
func (f Format) Render(e Event) ([]byte, error) {
	if f.render == nil {
		return json.Marshal(e)
	}
	return f.render(e)
}

// NamedFormat is a built-in format; contentType is only for FormatJSON (the
// others have their own) and may be empty.
func NamedFormat(name, contentType string) (Format, error) {
	switch name {
	case FormatJSON, "":
		return Format{ContentType: contentType}, nil
	case FormatSlack:
		return Format{ContentType: DefaultContentType, render: slack}, nil
	case FormatTeams:
		return Format{ContentType: DefaultContentType, render: teams}, nil
	case FormatText:
		return Format{ContentType: "text/plain; charset=utf-8", render: func(e Event) ([]byte, error) { return []byte(e.Summary()), nil }}, nil
	}
	return Format{}, fmt.Errorf("%q is not a format: %s (or give your own body with --notify-body)", name, strings.Join(Formats(), ", "))
}

// marshal is json.Marshal without HTML escaping: a chat message's & < > are
// its own business (Slack's escaping below), and the body stays readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// details are the facts both chat formats show, in order, as title and
// value; what is unknown is left out (a chat shows an empty value badly).
func details(e Event) [][2]string {
	var d [][2]string
	add := func(title, value string) {
		if value != "" {
			d = append(d, [2]string{title, value})
		}
	}
	add("Instance", orUnknown(e.InstanceID))
	add("Type / AZ", strings.Trim(e.InstanceType+" / "+e.AvailabilityZone, " /"))
	add("Notice", strings.TrimSpace(e.Kind+" "+e.Action))
	if !e.Deadline.IsZero() {
		add("Deadline", e.Deadline.UTC().Format("2006-01-02 15:04:05Z"))
	}
	add("Reason", e.Reason)
	add("Phases", e.Phases.Since(e.Seen))
	for _, o := range e.Outcomes {
		tg := o.TargetGroup
		o.TargetGroup = ""
		if tg == "" {
			tg = "Target groups"
		}
		add(tg, o.String())
	}
	return d
}

// A Slack message with one legacy attachment, for its colored bar and its
// fields (blocks would drop the Slack-compatible receivers): https://api.slack.com/messaging/webhooks,
// https://api.slack.com/reference/messaging/attachments; text is what the
// notification shows.
type slackMessage struct {
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments"`
}

type slackAttachment struct {
	Fallback string       `json:"fallback"`
	Color    string       `json:"color"`
	Fields   []slackField `json:"fields"`
	Footer   string       `json:"footer"`
	TS       int64        `json:"ts,omitempty"`
}

type slackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// slackEscape escapes the three characters Slack reads as markup in any text.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slack(e Event) ([]byte, error) {
	a := slackAttachment{Fallback: slackEscape(e.Summary()), Color: "warning", Footer: "spot-agent"}
	if e.Phase == PhaseDrained {
		a.Color = "good"
		if e.Failed() {
			a.Color = "danger"
		}
	}
	if !e.Time.IsZero() {
		a.TS = e.Time.Unix()
	}
	for _, d := range details(e) {
		short := slices.Contains([]string{"Instance", "Type / AZ", "Notice", "Deadline"}, d[0]) // two a line
		a.Fields = append(a.Fields, slackField{Title: slackEscape(d[0]), Value: slackEscape(d[1]), Short: short})
	}
	return marshal(slackMessage{Text: a.Fallback, Attachments: []slackAttachment{a}})
}

// A Teams message carrying an Adaptive Card (schema 1.4, which Teams renders
// on every client): https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
// and https://adaptivecards.io/explorer/ (TextBlock, FactSet).
type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"`
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string        `json:"$schema"`
	Type    string        `json:"type"`
	Version string        `json:"version"`
	Body    []cardElement `json:"body"`
}

type cardElement struct {
	Type   string     `json:"type"`
	Text   string     `json:"text,omitempty"`
	Size   string     `json:"size,omitempty"`
	Weight string     `json:"weight,omitempty"`
	Color  string     `json:"color,omitempty"`
	Wrap   bool       `json:"wrap,omitempty"`
	Facts  []cardFact `json:"facts,omitempty"`
}

type cardFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

func teams(e Event) ([]byte, error) {
	headline := cardElement{Type: "TextBlock", Text: e.Summary(), Size: "Medium", Weight: "Bolder", Color: "Warning", Wrap: true}
	if e.Phase == PhaseDrained {
		headline.Color = "Good"
		if e.Failed() {
			headline.Color = "Attention"
		}
	}
	facts := cardElement{Type: "FactSet"}
	for _, d := range details(e) {
		facts.Facts = append(facts.Facts, cardFact{Title: d[0], Value: d[1]})
	}
	return marshal(teamsMessage{Type: "message", Attachments: []teamsAttachment{{
		ContentType: "application/vnd.microsoft.card.adaptive",
		Content: adaptiveCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard", Version: "1.4",
			Body: []cardElement{headline, facts}},
	}}})
}
