package secret

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
)

// Parameter is what GetParameter answers, of what the agent uses.
type Parameter struct {
	Name, Type, Value string
	Version           int64
}

// SecureString is the type of an encrypted parameter: the only one a secret
// is read from.
const SecureString = "SecureString"

// Client is SSM's GetParameter, with decryption, on SSM's JSON protocol
// (POST, X-Amz-Target: AmazonSSM.GetParameter), signed with the SDK's SigV4
// signer and credentials.
//
// It is not the SDK's SSM client for a need the benchmark shows: that
// package (and its types package) builds SSM's whole schema when the program
// starts, 1.5 MB of heap that stays live for a call the agent makes a few
// times in its life; with it the on-instance agent's anonymous memory was
// 6.8 to 7.3 MiB against an idle nginx's 6.2, without it 5.3
// (internal/bench, footprint; the goal is at most nginx's). The SDK keeps
// what matters: credentials (the instance role's, refreshed), signing,
// its HTTP client, and the retry and throttle classifiers (Store retries,
// through agent/retry, on the codes and statuses this client reports).
type Client struct {
	region, endpoint string
	creds            aws.CredentialsProvider
	http             aws.HTTPClient
	signer           *v4.Signer
	now              func() time.Time
}

// NewClient is cfg's region's client: its endpoint is AWS_ENDPOINT_URL_SSM
// from getenv, else cfg.BaseEndpoint (AWS_ENDPOINT_URL), else the region's
// public one (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true ignores the first two,
// as the SDK does).
func NewClient(cfg aws.Config, getenv func(string) string) *Client {
	c := &Client{region: cfg.Region, creds: cfg.Credentials, http: cfg.HTTPClient, signer: v4.NewSigner(), now: time.Now}
	if c.http == nil {
		c.http = &http.Client{}
	}
	ignore := strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true")
	switch {
	case !ignore && getenv("AWS_ENDPOINT_URL_SSM") != "":
		c.endpoint = getenv("AWS_ENDPOINT_URL_SSM")
	case !ignore && cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "":
		c.endpoint = *cfg.BaseEndpoint
	default:
		c.endpoint = "https://ssm." + cfg.Region + "." + dnsSuffix(Partition(cfg.Region))
	}
	return c
}

// dnsSuffix is a partition's domain for its regional endpoints.
func dnsSuffix(partition string) string {
	if partition == "aws-cn" {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

// APIError is an error SSM answered: its code and message (never a value:
// an answer with one is a success). It is a smithy.APIError, so the SDK's
// retry and throttle classifiers and the metrics read its code.
type APIError struct {
	Status        int
	Code, Message string
	RequestID     string
}

// Error reads as the SDK's would, for those who know its errors.
func (e *APIError) Error() string {
	return fmt.Sprintf("operation error SSM: GetParameter, https response error StatusCode: %d, RequestID: %s, %s: %s", e.Status, e.RequestID, e.Code, e.Message)
}

// ErrorCode is SSM's error code (ParameterNotFound, AccessDeniedException, ...).
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage is SSM's message.
func (e *APIError) ErrorMessage() string { return e.Message }

// ErrorFault is the server's for a 5xx, the client's otherwise.
func (e *APIError) ErrorFault() smithy.ErrorFault {
	if e.Status >= 500 {
		return smithy.FaultServer
	}
	return smithy.FaultClient
}

// HTTPStatusCode is the answer's status, for the SDK's retryable statuses.
func (e *APIError) HTTPStatusCode() int { return e.Status }

// ErrUndecodable is a 200 whose body is not a parameter. Its text is not
// shown: it may hold the value.
var ErrUndecodable = errors.New("GetParameter: the answer could not be decoded (its text is not shown: it may hold the value)")

// maxAnswer bounds what is read of an answer (a parameter's value is at most
// 8 KB, advanced tier).
const maxAnswer = 1 << 20

// GetParameter reads the parameter named name (a name or an ARN) with
// decryption.
func (c *Client) GetParameter(ctx context.Context, name string) (Parameter, error) {
	body, err := json.Marshal(struct {
		Name           string
		WithDecryption bool
	}{name, true})
	if err != nil {
		return Parameter{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.endpoint, "/")+"/", bytes.NewReader(body))
	if err != nil {
		return Parameter{}, fmt.Errorf("GetParameter: endpoint %s: %w", c.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonSSM.GetParameter")
	if c.creds == nil {
		return Parameter{}, errors.New("GetParameter: no credentials")
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return Parameter{}, fmt.Errorf("GetParameter: credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ssm", c.region, c.now()); err != nil {
		return Parameter{}, fmt.Errorf("GetParameter: sign: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Parameter{}, fmt.Errorf("GetParameter: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Parameter{}, fmt.Errorf("GetParameter: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Parameter{}, apiError(resp, data)
	}
	var out struct {
		Parameter *struct {
			Name, Type, Value string
			Version           int64
		}
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Parameter == nil {
		return Parameter{}, ErrUndecodable
	}
	p := out.Parameter
	return Parameter{Name: p.Name, Type: p.Type, Value: p.Value, Version: p.Version}, nil
}

// apiError reads an error answer of the JSON protocol: the code from
// X-Amzn-ErrorType or the body's __type (either may carry a namespace before
// '#' and a URL after ':'), the message from message or Message.
func apiError(resp *http.Response, data []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-Requestid")}
	var body struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
		Msg     string `json:"Message"`
	}
	_ = json.Unmarshal(data, &body)
	code := resp.Header.Get("X-Amzn-Errortype")
	if code == "" {
		code = body.Type
	}
	if i := strings.LastIndex(code, "#"); i >= 0 {
		code = code[i+1:]
	}
	code, _, _ = strings.Cut(code, ":")
	e.Code, e.Message = code, body.Message
	if e.Message == "" {
		e.Message = body.Msg
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	return e
}
