// Package metrics owns the agent's private Prometheus registry and every metric
// name, in this one file. Components see it only through the small Observer
// interfaces they declare.
package metrics

import (
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Namespace prefixes every metric of the agent.
const Namespace = "spot_agent"

// Build describes the binary, for spot_agent_build_info.
type Build struct {
	Version, Revision string
}

// Metrics holds the registry and the agent's metrics.
type Metrics struct {
	Registry *prometheus.Registry

	identity          *prometheus.GaugeVec
	notices           *prometheus.CounterVec
	staleNotices      *prometheus.CounterVec
	deadline          prometheus.Gauge
	draining          prometheus.Gauge
	imdsRequests      *prometheus.CounterVec
	imdsDuration      *prometheus.HistogramVec
	imdsLastSuccess   prometheus.Gauge
	apiRequests       *prometheus.CounterVec
	apiDuration       *prometheus.HistogramVec
	deregistrations   *prometheus.CounterVec
	noticeToDereg     prometheus.Histogram
	registrations     *prometheus.CounterVec
	rejoins           *prometheus.CounterVec
	targetGroups      prometheus.Gauge
	resolveErrors     prometheus.Counter
	lifecycle         *prometheus.CounterVec
	httpRequests      *prometheus.CounterVec
	httpInFlight      prometheus.Gauge
	notifications     *prometheus.CounterVec
	notifyDuration    *prometheus.HistogramVec
	lastPoll          prometheus.Gauge
	readiness         *prometheus.GaugeVec
	appHealthy        prometheus.Gauge
	appChecks         *prometheus.CounterVec
	hookRuns          *prometheus.CounterVec
	hookExitCode      *prometheus.GaugeVec
	hookDuration      *prometheus.GaugeVec
	secretReady       *prometheus.GaugeVec
	secretErrors      *prometheus.CounterVec
	drainPhase        *prometheus.GaugeVec
	deadlineUnixMilli atomic.Int64
}

// readinessStates are the values of spot_agent_readiness's state label (web.State*).
var readinessStates = []string{"ready", "starting", "draining", "app_unhealthy"}

// New registers every metric on a new private registry.
func New(b Build) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f := promauto.With(reg)
	name := func(sub, n string) string { return prometheus.BuildFQName(Namespace, sub, n) }
	m := &Metrics{Registry: reg}

	f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "build_info"),
		Help: "Build information of the running agent; always 1.",
	}, []string{"version", "revision", "goversion"}).WithLabelValues(b.Version, b.Revision, runtime.Version()).Set(1)
	m.identity = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "instance_info"),
		Help: "Identity of this instance from the instance metadata service; always 1 once known.",
	}, []string{"instance_id", "instance_type", "availability_zone", "region"})
	m.notices = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "notices_total"),
		Help: "Notices seen in instance metadata (and stop signals), each counted once, by kind and action.",
	}, []string{"kind", "action"})
	m.staleNotices = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "stale_notices_total"),
		Help: "Notices whose time had already passed when seen, by kind.",
	}, []string{"kind"})
	m.deadline = f.NewGauge(prometheus.GaugeOpts{
		Name: name("", "deadline_timestamp_seconds"),
		Help: "Unix time at which the instance is expected to go away; 0 when no notice is being handled.",
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: name("", "deadline_remaining_seconds"),
		Help: "Seconds until the interruption deadline; 0 when no notice is being handled or the deadline has passed.",
	}, func() float64 {
		ms := m.deadlineUnixMilli.Load()
		if ms == 0 {
			return 0
		}
		return max(0, time.Until(time.UnixMilli(ms)).Seconds())
	})
	m.draining = f.NewGauge(prometheus.GaugeOpts{
		Name: name("", "draining"),
		Help: "1 while the agent is draining (readiness failing, leaving its target groups), else 0.",
	})
	m.imdsRequests = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("imds", "requests_total"),
		Help: "Instance metadata reads, by path and result (ok, not_found, timeout, unauthorized, server_error, error).",
	}, []string{"path", "result"})
	m.imdsDuration = f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    name("imds", "request_duration_seconds"),
		Help:    "Latency of instance metadata reads, token and retries included, by path.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"path"})
	m.imdsLastSuccess = f.NewGauge(prometheus.GaugeOpts{
		Name: name("imds", "last_success_timestamp_seconds"),
		Help: "Unix time of the last instance metadata read that got an answer (a document or a 404).",
	})
	m.lastPoll = f.NewGauge(prometheus.GaugeOpts{
		Name: name("", "last_poll_timestamp_seconds"),
		Help: "Unix time of the last spot/instance-action poll, whatever its outcome: the poll loop is alive.",
	})
	m.apiRequests = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("aws", "requests_total"),
		Help: "AWS API calls made by the agent, by operation and result (success or the API error code).",
	}, []string{"operation", "result"})
	m.apiDuration = f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    name("aws", "request_duration_seconds"),
		Help:    "Latency of AWS API calls made by the agent, by operation.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"operation"})
	m.deregistrations = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "deregistrations_total"),
		Help: "Target group deregistrations of this instance, by result (success, not_registered, error, timeout, dry_run, no_target_groups).",
	}, []string{"result"})
	m.noticeToDereg = f.NewHistogram(prometheus.HistogramOpts{
		Name:    name("", "notice_to_deregistration_seconds"),
		Help:    "Time from reading a notice to a successful DeregisterTargets, per target group.",
		Buckets: []float64{.01, .025, .05, .1, .15, .2, .3, .5, 1, 2.5, 5, 10, 30},
	})
	m.registrations = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "registrations_total"),
		Help: "Target group registrations made by --register or by a return after a stop or hibernation, by result.",
	}, []string{"result"})
	m.rejoins = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "rejoins_total"),
		Help: "Returns into the target groups a stop or hibernation took this instance out of, by result (success, error, skipped: the record was another instance's).",
	}, []string{"result"})
	m.targetGroups = f.NewGauge(prometheus.GaugeOpts{
		Name: name("", "target_groups"),
		Help: "Target groups this instance belongs to, as last resolved.",
	})
	m.resolveErrors = f.NewCounter(prometheus.CounterOpts{
		Name: name("", "target_group_resolve_errors_total"),
		Help: "Failed attempts to find this instance's target groups (missing tag, bad value, API errors).",
	})
	m.lifecycle = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "lifecycle_actions_total"),
		Help: "Auto Scaling lifecycle calls, by call (complete, heartbeat) and result.",
	}, []string{"call", "result"})
	m.httpRequests = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("http", "requests_total"),
		Help: "Requests answered on the traffic listener, by status code.",
	}, []string{"code"})
	m.httpInFlight = f.NewGauge(prometheus.GaugeOpts{
		Name: name("http", "requests_in_flight"),
		Help: "Requests being answered on the traffic listener.",
	})
	m.notifications = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "notifications_total"),
		Help: "Notifications about a notice, by sink (webhook, sns), phase (detected, drained) and result (success, rejected, error, timeout, secret_unavailable: its URL or body given as ssm:NAME could not be read).",
	}, []string{"sink", "phase", "result"})
	m.notifyDuration = f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    name("", "notification_duration_seconds"),
		Help:    "Time to deliver one notification to one sink, retries included, by sink.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"sink"})
	m.readiness = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "readiness"),
		Help: "1 for the state /healthz answers with (ready, starting, draining, app_unhealthy), 0 for the others.",
	}, []string{"state"})
	m.SetReadiness("starting")
	m.appHealthy = f.NewGauge(prometheus.GaugeOpts{
		Name: name("app", "healthy"),
		Help: "1 while the last check of --app-health-url passed, else 0 (0 too when no application is checked).",
	})
	m.appChecks = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("app", "health_checks_total"),
		Help: "Checks of --app-health-url, by result (ok, failed).",
	}, []string{"result"})
	for _, r := range []string{"ok", "failed"} {
		m.appChecks.WithLabelValues(r)
	}
	m.hookRuns = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("", "hook_runs_total"),
		Help: "Runs of --on-drain-exec (hook=drain) and --on-drain-done-exec (hook=drain-done), by result (ok, failed, timeout, error).",
	}, []string{"hook", "result"})
	m.hookExitCode = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "hook_exit_code"),
		Help: "Exit status of the hook's last run; -1 when it was killed at its bound or could not start.",
	}, []string{"hook"})
	m.hookDuration = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "hook_duration_seconds"),
		Help: "How long the hook's last run took.",
	}, []string{"hook"})
	m.secretReady = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("secret", "ready"),
		Help: "1 while the setting given as ssm:NAME (setting: its flag, e.g. notify-webhook) is read from SSM Parameter Store and usable, else 0 (what needs it is off).",
	}, []string{"setting"})
	m.secretErrors = f.NewCounterVec(prometheus.CounterOpts{
		Name: name("secret", "read_errors_total"),
		Help: "Failed reads of a setting given as ssm:NAME, by setting and reason (not_found, access_denied, kms_denied, wrong_type, invalid_value, throttled, timeout, error).",
	}, []string{"setting", "reason"})
	m.drainPhase = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: name("", "drain_phase_seconds"),
		Help: "Seconds from the notice to each phase the drain under way (or the last one) reached: unready (/healthz 503), deregistered (DeregisterTargets answered), draining (a load balancer first reported the target draining), out (every target group routes nothing more here), hook (--on-drain-exec started), exit (serving stopped).",
	}, []string{"phase"})
	return m
}

// SetSecretReady publishes whether a setting given as ssm:NAME is read.
func (m *Metrics) SetSecretReady(setting string, ready bool) {
	v := 0.0
	if ready {
		v = 1
	}
	m.secretReady.WithLabelValues(setting).Set(v)
}

// ObserveSecretError counts one failed read of a setting given as ssm:NAME.
func (m *Metrics) ObserveSecretError(setting, reason string) {
	m.secretErrors.WithLabelValues(setting, reason).Inc()
}

// ResetDrainPhases forgets the phases of the last drain, as a new one begins.
func (m *Metrics) ResetDrainPhases() { m.drainPhase.Reset() }

// ObserveDrainPhase publishes when the drain reached phase, counted from the notice.
func (m *Metrics) ObserveDrainPhase(phase string, sinceNotice time.Duration) {
	m.drainPhase.WithLabelValues(phase).Set(sinceNotice.Seconds())
}

// SetReadiness publishes the state /healthz answers with.
func (m *Metrics) SetReadiness(state string) {
	for _, s := range readinessStates {
		v := 0.0
		if s == state {
			v = 1
		}
		m.readiness.WithLabelValues(s).Set(v)
	}
}

// ObserveAppHealth counts one check of the application.
func (m *Metrics) ObserveAppHealth(ok bool) {
	if ok {
		m.appHealthy.Set(1)
		m.appChecks.WithLabelValues("ok").Inc()
		return
	}
	m.appHealthy.Set(0)
	m.appChecks.WithLabelValues("failed").Inc()
}

// ObserveHook records one run of a drain hook.
func (m *Metrics) ObserveHook(hook, result string, exitCode int, took time.Duration) {
	m.hookRuns.WithLabelValues(hook, result).Inc()
	m.hookExitCode.WithLabelValues(hook).Set(float64(exitCode))
	m.hookDuration.WithLabelValues(hook).Set(took.Seconds())
}

// SetIdentity publishes this instance's identity.
func (m *Metrics) SetIdentity(instanceID, instanceType, az, region string) {
	m.identity.Reset()
	m.identity.WithLabelValues(instanceID, instanceType, az, region).Set(1)
}

// ObserveIMDS counts one metadata read.
func (m *Metrics) ObserveIMDS(path, result string, took time.Duration) {
	m.imdsRequests.WithLabelValues(path, result).Inc()
	m.imdsDuration.WithLabelValues(path).Observe(took.Seconds())
	if result == "ok" || result == "not_found" {
		m.imdsLastSuccess.SetToCurrentTime()
	}
}

// ObservePoll marks the poll loop alive.
func (m *Metrics) ObservePoll(at time.Time) {
	m.lastPoll.Set(float64(at.UnixNano()) / 1e9)
}

// ObserveAPI counts one AWS API call.
func (m *Metrics) ObserveAPI(operation string, err error, took time.Duration) {
	m.apiRequests.WithLabelValues(operation, apiResult(err)).Inc()
	m.apiDuration.WithLabelValues(operation).Observe(took.Seconds())
}

// ObserveNotice counts a notice once.
func (m *Metrics) ObserveNotice(kind, action string, stale bool) {
	m.notices.WithLabelValues(kind, action).Inc()
	if stale {
		m.staleNotices.WithLabelValues(kind).Inc()
	}
}

// SetDraining publishes the drain state and its deadline (zero for none).
func (m *Metrics) SetDraining(on bool, deadline time.Time) {
	if !on {
		m.draining.Set(0)
		m.deadline.Set(0)
		m.deadlineUnixMilli.Store(0)
		return
	}
	m.draining.Set(1)
	if !deadline.IsZero() {
		m.deadline.Set(float64(deadline.UnixMilli()) / 1e3)
		m.deadlineUnixMilli.Store(deadline.UnixMilli())
	}
}

// ObserveDeregistration counts one group's deregistration outcome.
func (m *Metrics) ObserveDeregistration(result string, sinceNotice time.Duration) {
	m.deregistrations.WithLabelValues(result).Inc()
	if result == "success" {
		m.noticeToDereg.Observe(sinceNotice.Seconds())
	}
}

// ObserveRegistration counts one registration outcome.
func (m *Metrics) ObserveRegistration(result string) {
	m.registrations.WithLabelValues(result).Inc()
}

// ObserveRejoin counts one return into the target groups a stop or
// hibernation left.
func (m *Metrics) ObserveRejoin(result string) {
	m.rejoins.WithLabelValues(result).Inc()
}

// ObserveResolve publishes the outcome of a target group resolution.
func (m *Metrics) ObserveResolve(groups int, err error) {
	if err != nil {
		m.resolveErrors.Inc()
		return
	}
	m.targetGroups.Set(float64(groups))
}

// ObserveLifecycle counts one lifecycle call outcome.
func (m *Metrics) ObserveLifecycle(call, result string) {
	m.lifecycle.WithLabelValues(call, result).Inc()
}

// ObserveNotification counts one notification's delivery to one sink.
func (m *Metrics) ObserveNotification(sink, phase, result string, took time.Duration) {
	m.notifications.WithLabelValues(sink, phase, result).Inc()
	m.notifyDuration.WithLabelValues(sink).Observe(took.Seconds())
}

// HTTP returns the traffic listener's counters, resolved once so that the hot
// path does no label lookups. Malformed requests (400, 431) are answered by
// net/http before the handler and are not counted.
func (m *Metrics) HTTP() HTTPMetrics {
	h := HTTPMetrics{InFlight: m.httpInFlight, codes: map[int]prometheus.Counter{}}
	for _, c := range []int{200, 404, 405, 503} {
		h.codes[c] = m.httpRequests.WithLabelValues(strconv.Itoa(c))
	}
	h.other = m.httpRequests.WithLabelValues("other")
	return h
}

// HTTPMetrics counts traffic-listener requests.
type HTTPMetrics struct {
	InFlight prometheus.Gauge
	codes    map[int]prometheus.Counter
	other    prometheus.Counter
}

// Count counts one answered request.
func (h HTTPMetrics) Count(code int) {
	if c, ok := h.codes[code]; ok {
		c.Inc()
		return
	}
	h.other.Inc()
}

func apiResult(err error) string {
	if err == nil {
		return "success"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" {
		return ae.ErrorCode()
	}
	var ce interface{ Timeout() bool }
	if errors.As(err, &ce) && ce.Timeout() {
		return "timeout"
	}
	return "error"
}
