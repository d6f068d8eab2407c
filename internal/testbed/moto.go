package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// Region is the region every test uses.
const Region = "us-east-1"

// Account is the account moto answers for, and the instances' identity's.
const Account = "123456789012"

// Moto is a running moto server, behind a FIS fake (moto 5.2.1 lacks most
// of FIS: see FIS) that passes every other request on: URL is the fake's.
type Moto struct {
	URL string
	// FIS is the fake in front of moto: the tests drive experiments with it.
	FIS *FIS
	// HTTPClient, when set, makes every request (e.g. one that dials into
	// another network namespace, where a server the test did not start with
	// StartMoto listens).
	HTTPClient aws.HTTPClient
	cmd        *exec.Cmd
	out        *syncBuffer // moto's request log, written by exec's copier
	front      *http.Server
}

// MotoPython finds a Python interpreter that can import moto: $MOTO_PYTHON,
// else the machine image's pyenv interpreters, else python3 on PATH.
var MotoPython = sync.OnceValues(func() (string, error) {
	var candidates []string
	if p := os.Getenv("MOTO_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	home, _ := os.UserHomeDir()
	matches, _ := filepath.Glob(filepath.Join(home, ".pyenv/versions/*/bin/python3"))
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	candidates = append(candidates, matches...)
	candidates = append(candidates, "python3")
	for _, c := range candidates {
		if err := exec.Command(c, "-c", "import moto.server").Run(); err == nil {
			return c, nil
		}
	}
	return "", errors.New("no python3 with moto found (tried $MOTO_PYTHON, ~/.pyenv/versions/*/bin/python3, python3)")
})

// StartMoto starts a moto server on a free loopback port. The caller stops it
// with Stop (or it is stopped at the end of the test when t is given to Cleanup).
func StartMoto(t testing.TB) *Moto {
	t.Helper()
	m, err := startMoto()
	Need(t, "moto server", err)
	t.Cleanup(m.Stop)
	return m
}

// LaunchMoto starts a moto server for a program (the bench); Stop it when done.
func LaunchMoto() (*Moto, error) { return startMoto() }

func startMoto() (*Moto, error) {
	py, err := MotoPython()
	if err != nil {
		return nil, err
	}
	ln, err := pickPort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(py, "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(ln))
	cmd.Env = append(os.Environ(), "MOTO_IAM_LOAD_MANAGED_POLICIES=true")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	m := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", ln), cmd: cmd, out: out}
	if err := WaitTCP(fmt.Sprintf("127.0.0.1:%d", ln), 30*time.Second); err != nil {
		m.Stop()
		return nil, fmt.Errorf("moto did not start: %w\n%s", err, out.String())
	}
	if err := m.serveFIS(); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// serveFIS puts the FIS fake in front of moto on a port of its own, which
// becomes the server's URL.
func (m *Moto) serveFIS() error {
	f, err := NewFIS(m.URL, nil, ec2.NewFromConfig(m.Config()), "123456789012")
	if err != nil {
		return err
	}
	var lis net.Listener
	for i := 0; i < 50 && lis == nil; i++ {
		p, err := pickPort()
		if err != nil {
			return err
		}
		lis, _ = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	}
	if lis == nil {
		return fmt.Errorf("no port for the FIS fake")
	}
	m.front = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.front.Serve(lis) }()
	m.FIS, m.URL = f, "http://"+lis.Addr().String()
	f.URL = m.URL
	return nil
}

// Stop kills the server.
func (m *Moto) Stop() {
	if m.front != nil {
		_ = m.front.Close()
		m.FIS.Close()
	}
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

// Reset wipes every resource.
func (m *Moto) Reset(t testing.TB) {
	t.Helper()
	resp, err := http.Post(m.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		t.Fatalf("reset moto: %v", err)
	}
	resp.Body.Close()
}

// Env is the environment that points an agent's SDK at this server.
func (m *Moto) Env() []string { return endpointEnv(m.URL) }

// endpointEnv points an SDK (or the spot-agent binary) at an AWS endpoint
// that takes the fake credentials "testing".
func endpointEnv(url string) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + url,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true", // the tests' own SDK clients never look for IMDS credentials
	}
}

// Config is an SDK configuration for this server.
func (m *Moto) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(m.URL),
		HTTPClient:   m.HTTPClient,
	}
}

// EC2 returns an EC2 client for this server.
func (m *Moto) EC2() *ec2.Client { return ec2.NewFromConfig(m.Config()) }

// ELB returns an ELBv2 client for this server.
func (m *Moto) ELB() *elbv2.Client { return elbv2.NewFromConfig(m.Config()) }

var vpcOnce sync.Map // moto URL → VPC id

// VPC returns a VPC, created once per server.
func (m *Moto) VPC(t testing.TB) string {
	t.Helper()
	if v, ok := vpcOnce.Load(m.URL); ok {
		if out, err := m.EC2().DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{VpcIds: []string{v.(string)}}); err == nil && len(out.Vpcs) == 1 {
			return v.(string)
		}
	}
	out, err := m.EC2().CreateVpc(context.Background(), &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatalf("create VPC: %v", err)
	}
	vpcOnce.Store(m.URL, *out.Vpc.VpcId)
	return *out.Vpc.VpcId
}

// TargetGroup creates an HTTP target group, health checked on /healthz, and
// sets its deregistration delay.
func (m *Moto) TargetGroup(t testing.TB, name string, port int32, delay time.Duration) string {
	t.Helper()
	return m.CheckedTargetGroup(t, name, port, delay, HealthCheck{Path: "/healthz"})
}

// CheckedTargetGroup is TargetGroup with the health check hc (its zero
// fields: moto's defaults).
func (m *Moto) CheckedTargetGroup(t testing.TB, name string, port int32, delay time.Duration, hc HealthCheck) string {
	t.Helper()
	ctx := context.Background()
	in := &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(port), VpcId: aws.String(m.VPC(t)),
		HealthCheckPath: aws.String(hc.Path),
	}
	seconds := func(d time.Duration) *int32 {
		if d == 0 {
			return nil
		}
		return aws.Int32(int32(d.Seconds()))
	}
	in.HealthCheckIntervalSeconds, in.HealthCheckTimeoutSeconds = seconds(hc.Interval), seconds(hc.Timeout)
	if hc.Rise > 0 {
		in.HealthyThresholdCount = aws.Int32(int32(hc.Rise))
	}
	if hc.Fall > 0 {
		in.UnhealthyThresholdCount = aws.Int32(int32(hc.Fall))
	}
	out, err := m.ELB().CreateTargetGroup(ctx, in)
	if err != nil {
		t.Fatalf("create target group %s: %v", name, err)
	}
	arn := *out.TargetGroups[0].TargetGroupArn
	_, err = m.ELB().ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{
		TargetGroupArn: aws.String(arn),
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String(fmt.Sprint(int(delay.Seconds())))}},
	})
	if err != nil {
		t.Fatalf("set deregistration delay of %s: %v", name, err)
	}
	return arn
}

// Instance launches an instance with the given tags.
func (m *Moto) Instance(t testing.TB, tags map[string]string) string {
	t.Helper()
	ctx := context.Background()
	in := &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeC5Large, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}
	out, err := m.EC2().RunInstances(ctx, in)
	if err != nil {
		t.Fatalf("run instance: %v", err)
	}
	id := *out.Instances[0].InstanceId
	if len(tags) > 0 {
		var ts []ec2types.Tag
		for k, v := range tags {
			ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := m.EC2().CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ts}); err != nil {
			t.Fatalf("tag %s: %v", id, err)
		}
	}
	return id
}

// Register registers an instance in a target group on port.
func (m *Moto) Register(t testing.TB, tg, id string, port int32) {
	t.Helper()
	_, err := m.ELB().RegisterTargets(context.Background(), &elbv2.RegisterTargetsInput{
		TargetGroupArn: aws.String(tg), Targets: []elbtypes.TargetDescription{{Id: aws.String(id), Port: aws.Int32(port)}},
	})
	if err != nil {
		t.Fatalf("register %s in %s: %v", id, tg, err)
	}
}

// Registered returns the ports id is registered on in tg (any state but unused/draining).
func (m *Moto) Registered(t testing.TB, tg, id string) []int32 {
	t.Helper()
	out, err := m.ELB().DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)})
	if err != nil {
		t.Fatalf("describe target health of %s: %v", tg, err)
	}
	var ports []int32
	for _, d := range out.TargetHealthDescriptions {
		if aws.ToString(d.Target.Id) != id {
			continue
		}
		if s := d.TargetHealth.State; s == elbtypes.TargetHealthStateEnumUnused || s == elbtypes.TargetHealthStateEnumDraining {
			continue
		}
		ports = append(ports, aws.ToInt32(d.Target.Port))
	}
	return ports
}

// Log returns moto's request log so far.
func (m *Moto) Log() string { return m.out.String() }

// Shared is one moto server per test binary, started on first use. Call
// StopShared from TestMain after m.Run.
var (
	sharedMu   sync.Mutex
	sharedMoto *Moto
	sharedErr  error
)

// SharedMoto returns the test binary's moto server, starting it if needed.
func SharedMoto(t testing.TB) *Moto {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMoto == nil && sharedErr == nil {
		sharedMoto, sharedErr = startMoto()
	}
	Need(t, "moto server", sharedErr)
	return sharedMoto
}

// StopShared stops the shared moto server, if one was started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMoto != nil {
		sharedMoto.Stop()
		sharedMoto = nil
	}
}
